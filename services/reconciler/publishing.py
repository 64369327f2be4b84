"""What the reconciler publishes (findings, repairs, `rejected` records), and what the broker refused.

Nothing it decided is dropped on the way out: a finding it may not publish yet, or one the broker
refused, is held among the unsent (`Unsent`, rows in the snapshot: a restart keeps them); a repair
or a `rejected` record the broker refused is kept in memory. Each is sent again at the next tick.
"""

from __future__ import annotations

from collections.abc import Callable

from services.core import metrics
from services.core.events import Event, Finding, ViewChanged
from services.core.kafka import DeliveryRefused, Refused, partition_for
from services.core.serde import decode
from services.core.topics import Topics, copy_key
from services.reconciler.engine import Outcome
from services.reconciler.open_findings import Unsent
from services.reconciler.ports import Outbox
from services.reconciler.repair import repair_key


class Publication:
    """Sends through `outbox`; `partitions` (topic -> count, the runner's, filled as it opens its
    inputs) puts a repair in its listing's own partition under its repair key."""

    def __init__(
        self,
        topics: Topics,
        outbox: Outbox,
        unsent: Unsent,
        partitions: dict[str, int],
        log: Callable[[str], None],
    ) -> None:
        self.topics, self.outbox, self.unsent, self.log = topics, outbox, unsent, log
        self.partitions = partitions
        self._repairs: list[ViewChanged] = []  # refused by the broker, sent again at the next tick
        self._refusals: list[tuple[str, Event]] = []  # `rejected` records refused, likewise

    def send(self, outcome: Outcome) -> None:
        """Every finding and repair of `outcome`, confirmed by the broker (or kept, see `flush`)."""
        for finding in outcome.findings:
            metrics.FINDINGS.labels(finding.kind).inc()
            listing_id = finding.envelope.listing_id
            self.log(f"FINDING {finding.kind} {finding.copy_agency} {listing_id}: {finding.detail}")
            self.outbox.send(self.topics.findings, copy_key(finding.copy_agency, listing_id), finding)
        for change in outcome.repairs:
            metrics.REPAIRS.labels(change.view_agency).inc()
            topic, listing_id = self.topics.views(change.view_agency), change.envelope.listing_id
            partition = (
                partition_for(listing_id, self.partitions[topic]) if topic in self.partitions else None
            )
            self.outbox.send(topic, repair_key(listing_id), change, partition=partition)
        self.flush()

    def reject(self, key: str, refusal: Event) -> None:
        """Queue a `rejected` record; it is confirmed with the next flush."""
        self.outbox.send(self.topics.rejected, key, refusal)

    def kept(self) -> bool:
        return bool(self.unsent or self._repairs or self._refusals)

    def send_kept(self) -> None:
        """Send again what was held or refused before (a tick, while publishing is allowed)."""
        repairs, self._repairs = self._repairs, []
        refusals, self._refusals = self._refusals, []
        for key, refusal in refusals:
            self.reject(key, refusal)
        self.send(Outcome(findings=self.unsent.take(), repairs=repairs))

    def flush(self) -> None:
        """Wait for the broker to confirm what was sent; what it refused is kept, never dropped."""
        try:
            self.outbox.flush()
        except DeliveryRefused as e:
            self.log(f"{e}: kept, sent again at the next tick")
            for refused in e.refused:
                self._keep(refused)

    def _keep(self, refused: Refused) -> None:
        event = decode(refused.value, refused.topic)
        if isinstance(event, Finding):
            self.unsent.hold([event])
        elif isinstance(event, ViewChanged):
            self._repairs.append(event)
        else:
            self._refusals.append((refused.key.decode(errors="replace"), event))
