"""The reconciler's logic, with no broker and no clock of its own: events in, findings and repairs out.

The runner feeds it what it reads (ledger states, view changes, acknowledgements,
digests) and asks it, when caught up, to `check` deadlines and to `reconcile` one
copy against its view through a `CopyProbe`. Everything here is deterministic
given its inputs and `now`, which is what the unit and property tests rely on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.core.copystore.probe import CopyProbe, Leaf
from services.core.events import CopyApplied, CopyDigest, Finding, ListingState, ViewChanged
from services.core.listing import ENDED
from services.core.policy import Policy
from services.core.topics import RECONCILER
from services.reconciler import findings
from services.reconciler.acks import AckTracker, Settled, Sla
from services.reconciler.antientropy import Suspect, narrow
from services.reconciler.consistency import CHANGE, REPAIR, ConsistencyTimes
from services.reconciler.expected import ExpectedViews
from services.reconciler.model import Difference, problem_of
from services.reconciler.objections import ObjectionWatch
from services.reconciler.probe import MeteredProbe, wire_size
from services.reconciler.repair import RepairBook, repair_change


@dataclass(frozen=True)
class Timing:
    sla: Sla
    repair_sla: timedelta


@dataclass
class Outcome:
    """What the runner must publish: findings to `findings`, repairs to `views.<agency>`."""

    findings: list[Finding] = field(default_factory=list)
    repairs: list[ViewChanged] = field(default_factory=list)


@dataclass(frozen=True)
class PassReport:
    """One anti-entropy pass over one copy: what it cost and what it found."""

    agency: str
    differing_buckets: int
    suspects: int
    differences: list[Difference]
    bytes_exchanged: int
    deferred: bool = False


class Reconciler:
    def __init__(self, policy: Policy, agencies: Iterable[str], timing: Timing) -> None:
        self.timing = timing
        self.expected = ExpectedViews(policy, agencies)
        self.acks = AckTracker(timing.sla)
        self.repairs = RepairBook(timing.repair_sla)
        self.objections = ObjectionWatch()
        self.times = ConsistencyTimes()
        self.digests: dict[str, CopyDigest] = {}
        self._read_up_to: dict[str, dict[int, int]] = {a: {} for a in self.expected.agencies}
        self._repaired: set[str] = set()  # detections whose repair the copy acknowledged

    # --- what the runner reads -----------------------------------------------------

    def on_state(self, state: ListingState, at: datetime, raw: bytes | None = None) -> None:
        if self.expected.update(state, at, raw):
            self.objections.update(state)

    def on_view(self, change: ViewChanged, partition: int, offset: int, at: datetime) -> None:
        read = self._read_up_to.setdefault(change.view_agency, {})
        read[partition] = max(read.get(partition, 0), offset + 1)
        if change.envelope.agency == RECONCILER:
            self.repairs.delivered(change, partition, offset)
        else:
            self._record(self.acks.expect(change, at))

    def on_applied(self, applied: CopyApplied) -> Outcome:
        """Settle what the acknowledgement covers: close late ones' findings, and a repair it confirms."""
        settled = self.acks.acknowledge(applied)
        self._record(settled)
        out = Outcome(findings=[findings.acknowledged_late(s, applied.applied_at) for s in settled if s.late])
        repair = self.repairs.acknowledged(applied)
        if repair is None:
            return out
        detection = repair.detection
        self._repaired.add(detection.finding_id)
        since = detection.since or detection.detected_at
        self.times.add(applied.copy_agency, REPAIR, (applied.applied_at - since).total_seconds())
        out.findings.append(findings.repaired(detection, applied.applied_at))
        return out

    def on_digest(self, digest: CopyDigest) -> None:
        self.digests[digest.copy_agency] = digest

    def _record(self, settled: list[Settled]) -> None:
        for s in settled:
            self.times.add(s.agency, CHANGE, s.seconds)

    # --- what the runner asks when caught up ----------------------------------------

    def check(self, now: datetime) -> Outcome:
        """Deadlines: unacknowledged changes, unanswered objections, unacknowledged repairs."""
        out = Outcome()
        out.findings += [findings.missing_ack(o, now) for o in self.acks.overdue(now)]
        out.findings += self.objections.overdue(now)
        out.findings += [findings.escalated(r.detection, now) for r in self.repairs.overdue(now)]
        return out

    def healthy(self, agency: str, copy_buckets: list[str]) -> bool:
        return self.expected.digest(agency).hex_buckets() == copy_buckets

    def reconcile(
        self, agency: str, copy_buckets: list[str], probe: CopyProbe, now: datetime
    ) -> tuple[Outcome, PassReport]:
        """Compare one copy with its view, narrow any mismatch and plan a repair per difference."""
        metered = MeteredProbe(probe)
        differing = len(self.expected.digest(agency).differing_buckets(copy_buckets))
        suspects = narrow(agency, self.expected, copy_buckets, metered) if differing else []
        deferred = bool(suspects) and not self._read_past(agency, metered.positions())
        found = [] if deferred else [d for s in suspects if (d := self._judge(agency, s, now))]
        out = Outcome()
        for diff in found:
            self._plan(diff, now, out)
        cost = wire_size(copy_buckets) + metered.bytes
        return out, PassReport(agency, differing, len(suspects), found, cost, deferred)

    def _read_past(self, agency: str, copy_positions: dict[int, int]) -> bool:
        """True when this reconciler has read the view topic at least as far as the copy applied it.

        Otherwise the copy may hold a change the reconciler has not seen yet, and a
        "difference" would be the reconciler's lag, not the copy's fault.
        """
        read = self._read_up_to.get(agency, {})
        return all(read.get(p, 0) >= offset for p, offset in copy_positions.items())

    def _judge(self, agency: str, suspect: Suspect, now: datetime) -> Difference | None:
        """A suspect is a difference unless a repair is on its way or the change is still in its SLA."""
        lid = suspect.listing_id
        known = self.expected.known(lid)
        version = known.version if known else 0
        if self.repairs.pending(agency, lid) or self.acks.announced(agency, lid) > version:
            return None  # being repaired, or the ledger topic lags the view topic here: judge later
        row = self.expected.row(agency, lid) if suspect.expected is not None else None
        expected = Leaf.of(row) if row else None
        window = self.timing.sla.of("upsert" if row else "delete")
        if known and now - known.since < window and self.acks.acked(agency, lid) < version:
            return None  # emitted recently and not acknowledged yet: the copy is merely behind
        ended_as = known.status if known is not None and known.status in ENDED else None
        since = known.since if known else now
        return Difference(agency, lid, problem_of(expected, suspect.actual), expected, suspect.actual,
                          version, ended_as, since)  # fmt: skip

    def _plan(self, diff: Difference, now: datetime, out: Outcome) -> None:
        detection = findings.stale(diff, now)
        if detection.finding_id in self._repaired:  # repaired, acknowledged, and wrong again the same way
            out.findings.append(findings.escalated(detection, now))
        row = self.expected.row(diff.agency, diff.listing_id) if diff.expected else None
        change = repair_change(diff, detection, row, self.expected.state(diff.listing_id), now)
        self.repairs.open(detection, change, now)
        out.findings.append(detection)
        out.repairs.append(change)
