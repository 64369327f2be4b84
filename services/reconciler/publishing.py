"""What the reconciler publishes (findings, repairs, `rejected` records), and what the broker refused.

Nothing it decided is dropped on the way out: a finding it may not publish yet, or one the broker
refused, is held among the unsent (`Unsent`, rows in the snapshot: a restart keeps them); a repair
or a `rejected` record the broker refused is kept in memory. Each is sent again at a later tick: at
once, then, while the broker keeps refusing (a record over a topic's size limit, a revoked ACL), after
a wait that doubles up to five minutes, so a refusal for good costs a log line now and then, not one
a tick; after a few refusals in a row, health says so (`trouble`), for an operator to act on.
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

RETRY_FIRST_S = 1.0  # the wait before sending again what the broker refused once
RETRY_MAX_S = 300.0  # the longest wait, however often it refused
TROUBLE_AFTER = 3  # refusals in a row before health reports them


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
        clock: Callable[[], float],
    ) -> None:
        self.topics, self.outbox, self.unsent, self.log = topics, outbox, unsent, log
        self.partitions, self.clock = partitions, clock
        self._refused_in_a_row = 0  # flushes in a row that the broker refused something in
        self._last_refusal = ""  # why, the last time
        self._retry_at = 0.0  # the clock's time from which what is kept may be sent again
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

    def due(self) -> bool:
        """Whether something is kept and may be sent again now (see the module's docstring)."""
        return self.kept() and self.clock() >= self._retry_at

    def trouble(self) -> str | None:
        """Why health should not be ok: the broker refused what this keeps, several flushes in a row."""
        if self._refused_in_a_row < TROUBLE_AFTER:
            return None
        return (
            f"the broker refused {self._refused_in_a_row} sends in a row ({self._last_refusal}): "
            f"findings, repairs or rejected records kept unsent until it accepts them"
        )

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
            self._refused_in_a_row += 1
            self._last_refusal = e.refused[0].reason
            wait = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (self._refused_in_a_row - 1))
            self._retry_at = self.clock() + wait
            self.log(f"{e}: kept, sent again in {wait:.0f} s ({self._refused_in_a_row} refusals in a row)")
            for refused in e.refused:
                self._keep(refused)
        else:
            if not self.kept():
                self._refused_in_a_row, self._retry_at = 0, 0.0

    def _keep(self, refused: Refused) -> None:
        event = decode(refused.value, refused.topic)
        if isinstance(event, Finding):
            self.unsent.hold([event])
        elif isinstance(event, ViewChanged):
            self._repairs.append(event)
        else:
            self._refusals.append((refused.key.decode(errors="replace"), event))
