"""The reconciler's logic, with no broker and no clock of its own: events in, findings and repairs out.

The runner feeds it what it reads (ledger states, view changes, acknowledgements,
digests, and the findings already published) and asks it, on time, to `check`
deadlines, to `reconcile` one copy against its view through a `CopyProbe`, and to
`verify` a few buckets of a copy from its rows. Everything here is deterministic
given its inputs and `now`, which is what the unit and property tests rely on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.core.copystore.probe import CopyProbe, Leaf
from services.core.digest import MODULUS
from services.core.events import CopyApplied, CopyDigest, Finding, ListingState, ViewChanged
from services.core.listing import ENDED
from services.core.policy import Policy
from services.core.serde import decode, encode
from services.core.snapshot import Partition, Snapshot
from services.core.topics import RECONCILER
from services.reconciler import findings, kept
from services.reconciler.acks import AckTracker, Applied, Settled, Sla, applied_of
from services.reconciler.antientropy import Suspect, narrow
from services.reconciler.consistency import CHANGE, CHANGED, ConsistencyTimes
from services.reconciler.expected import ExpectedViews
from services.reconciler.model import DUE, SHOWN, Difference, problem_of
from services.reconciler.objections import ObjectionWatch
from services.reconciler.open_findings import FindingBook
from services.reconciler.probe import MeteredProbe, wire_size
from services.reconciler.repair import Repair, RepairBook, repair_change


@dataclass(frozen=True)
class Timing:
    sla: Sla
    repair_sla: timedelta


@dataclass
class Outcome:
    """What the runner must publish: findings to `findings`, repairs to `views.<agency>`."""

    findings: list[Finding] = field(default_factory=list)
    repairs: list[ViewChanged] = field(default_factory=list)

    def __iadd__(self, other: Outcome) -> Outcome:
        self.findings += other.findings
        self.repairs += other.repairs
        return self


@dataclass(frozen=True)
class PassReport:
    """One anti-entropy pass over one copy: what it cost and what it found."""

    agency: str
    differing_buckets: int
    suspects: int
    differences: list[Difference]
    bytes_exchanged: int
    deferred: bool = False
    unexplained: list[int] = field(default_factory=list)


class Reconciler:
    def __init__(
        self, policy: Policy, agencies: Iterable[str], timing: Timing, snapshot: Snapshot | None = None
    ) -> None:
        self.timing = timing
        self.snapshot = snapshot or Snapshot(":memory:", kept.SCHEMA, kept.TABLES)
        self._db = self.snapshot.db
        self._committed = -1  # `total_changes` of the snapshot's connection at the last commit
        self.expected = ExpectedViews(policy, agencies, snapshot=self.snapshot)
        self.acks = AckTracker(timing.sla, self._db)
        self.repairs = RepairBook(timing.repair_sla, self._db)
        self.objections = ObjectionWatch()
        self.times = ConsistencyTimes()
        self.book = FindingBook(self._db)
        self.digests: dict[str, CopyDigest] = {}
        self._read_up_to: dict[str, dict[int, int]] = {a: {} for a in self.expected.agencies}
        self._repaired: set[tuple[object, ...]] = set()  # differences whose repair the copy acknowledged
        self._signatures: dict[str, tuple[object, ...]] = {}  # detection id -> what was different
        self._drifting: dict[str, set[int]] = {}  # open digest_drift id -> the buckets it named

    # --- what the runner reads -----------------------------------------------------

    def resume(self, views_read: Mapping[str, Mapping[int, int]] | None = None) -> None:
        """After the snapshot was opened (and perhaps emptied: it was of another log): what it holds
        in memory as well (bucket sums, open detections and repairs, digests), the objections it
        holds watched, and `views_read` (agency -> partition -> next offset) as read already."""
        self.expected.reload()
        self.acks.reload()
        self.book.reload()
        self.repairs.reload()
        self.objections = ObjectionWatch()
        for state in self.expected.objected():
            self.objections.update(state)
        self.digests = {}
        for (raw,) in self._db.execute("SELECT raw FROM digests").fetchall():
            digest = decode(raw, "digests")
            assert isinstance(digest, CopyDigest)
            self.digests[digest.copy_agency] = digest
        self._read_up_to = {a: dict((views_read or {}).get(a, {})) for a in self.expected.agencies}

    def commit(self, positions: Mapping[Partition, int]) -> None:
        """Make all of the above durable with the positions of every partition it reflects."""
        self.expected.commit(positions)
        self._committed = self._db.total_changes

    def changed(self) -> bool:
        """Whether anything was written since the last commit (a tick's findings, repairs, marks)."""
        return self._db.total_changes != self._committed

    def on_state(self, state: ListingState, at: datetime, raw: bytes | None = None) -> None:
        if self.expected.update(state, at, raw):
            self.objections.update(state)

    def on_view(self, change: ViewChanged, partition: int, offset: int, at: datetime) -> Outcome:
        """A view change read back; a repair's, settled here when the copy's ack of it came first."""
        read = self._read_up_to.setdefault(change.view_agency, {})
        read[partition] = max(read.get(partition, 0), offset + 1)
        if change.envelope.agency != RECONCILER:
            self._record(self.acks.expect(change, at))
            return Outcome()
        settled = self.repairs.delivered(change.envelope.event_id, partition, offset)
        if settled is None:
            return Outcome()
        return self.novel(Outcome(findings=[self._repaired_by(*settled)]))

    def on_applied(self, applied: CopyApplied) -> Outcome:
        """Settle what the acknowledgement covers: close late ones' findings, and a repair it confirms."""
        settled = self.acks.acknowledge(applied)
        self._record(settled)
        out = Outcome(findings=[findings.acknowledged_late(s, applied.applied_at) for s in settled if s.late])
        ack, key = applied_of(applied), (applied.copy_agency, applied.envelope.listing_id)
        repair = self.repairs.acknowledged(ack, key)
        if repair is not None:
            out.findings.append(self._repaired_by(repair, ack))
        return self.novel(out)

    def _repaired_by(self, repair: Repair, applied: Applied) -> Finding:
        """The copy acknowledged a repair: time it from when the copy went wrong, and say so."""
        detection = repair.detection
        self._repaired.add(self._signatures.pop(detection.finding_id, ()))
        since = detection.since or detection.detected_at
        family = findings.family_of(detection)
        self.times.add(detection.copy_agency, family, max(0.0, (applied.applied_at - since).total_seconds()))
        return findings.repaired(detection, applied.applied_at)

    def on_digest(self, digest: CopyDigest, raw: bytes | None = None) -> None:
        self.digests[digest.copy_agency] = digest
        self._db.execute(
            "INSERT OR REPLACE INTO digests VALUES (?, ?)", (digest.copy_agency, raw or encode(digest))
        )

    def on_finding(self, finding: Finding) -> Outcome:
        """A finding read back from the log (ours, or another reconciler's before us). A stale
        listing's detection we did not make: its repair is awaited here too (`RepairBook.adopt`),
        and settled at once if the copy's acknowledgement of it was read first."""
        if self.book.seen(finding.finding_id):
            return Outcome()
        self._noted(finding)
        if finding.kind not in findings.STALE_KINDS or not self.book.is_open(finding.finding_id):
            return Outcome()
        latest = self.acks.last(finding.copy_agency, finding.envelope.listing_id)
        repair = self.repairs.adopt(finding, latest)
        if repair is None or latest is None:
            return Outcome()
        return self.novel(Outcome(findings=[self._repaired_by(repair, latest)]))

    def _noted(self, finding: Finding) -> None:
        """A finding is in the log: the book knows it, and a detection it closes awaits no repair."""
        closed = self.book.note(finding)
        if closed is not None:
            self.repairs.forget(closed)

    def _record(self, settled: list[Settled]) -> None:
        for s in settled:
            self.times.add(s.agency, CHANGE, s.seconds)

    def novel(self, out: Outcome) -> Outcome:
        """The outcome less findings already in the log: a restart or a takeover never repeats one."""
        fresh = []
        for finding in out.findings:
            if not self.book.seen(finding.finding_id):
                self._noted(finding)
                fresh.append(finding)
        out.findings = fresh
        return out

    # --- what the runner asks, on time ----------------------------------------------

    def check(self, now: datetime, acks_read_to: datetime | None = None) -> Outcome:
        """Deadlines: unacknowledged changes, unanswered objections, unacknowledged repairs.

        `acks_read_to`: how far the acknowledgements have been read (the runner's horizon);
        a deadline past it is not judged yet, so a reconciler behind on its input never
        reports its own lag as a copy's fault. It also closes findings the acks now answer.
        """
        horizon = now if acks_read_to is None else min(now, acks_read_to)
        out = Outcome()
        out.findings += [findings.missing_ack(o, now) for o in self.acks.overdue(now, horizon)]
        out.findings += self.objections.overdue(now)
        out.findings += [findings.escalated(r.detection, now) for r in self.repairs.overdue(horizon)]
        out.findings += self._acknowledged_since(now)
        return self.novel(out)

    def _acknowledged_since(self, now: datetime) -> list[Finding]:
        """Open missing acknowledgements the copy has since acknowledged (e.g. read after a restart)."""
        closed = []
        for detection in self.book.open_of_kind(findings.MISSING_ACK):
            acked = self.acks.acked(detection.copy_agency, detection.envelope.listing_id)
            if acked >= detection.expected_version:
                closed.append(findings.resolved(detection, now, f"the copy acknowledged v{acked}"))
        return closed

    def healthy(self, agency: str, copy_buckets: list[str]) -> bool:
        return self.expected.digest(agency).hex_buckets() == copy_buckets

    def resolve(self, agency: str, now: datetime, how: str) -> Outcome:
        """The copy was just proved equal to its view: every finding still open about it is closed,
        but one whose repair is in flight and not escalated: the copy may hold it already (a sink
        can apply a repair between its sending and the rescan, seen under load), and its
        acknowledgement closes it, once, as repaired."""
        settled = [d for d in self.book.open_for(agency) if not self.repairs.awaited(d.finding_id)]
        return self.novel(Outcome(findings=[findings.resolved(d, now, how) for d in settled]))

    def reconcile(
        self,
        agency: str,
        copy_buckets: list[str],
        probe: CopyProbe,
        now: datetime,
        shown_at: datetime | None = None,
    ) -> tuple[Outcome, PassReport]:
        """Compare one copy with its view, narrow any mismatch and plan a repair per difference.

        `shown_at`: when the copy's buckets were taken (its digest's time), the moment a copy
        that changed under its sink is known to have been wrong since.
        """
        metered = MeteredProbe(probe)
        differing = len(self.expected.digest(agency).differing_buckets(copy_buckets))
        narrowed = narrow(agency, self.expected, copy_buckets, metered) if differing else None
        suspects = narrowed.suspects if narrowed else []
        deferred = bool(suspects) and not self._read_past(agency, metered.positions())
        seen = shown_at or now
        found = [] if deferred else [d for s in suspects if (d := self._judge(agency, s, now, seen))]
        out = Outcome()
        for diff in found:
            self._plan(diff, now, out)
        unexplained = narrowed.unexplained if narrowed and not deferred else []
        cost = wire_size(copy_buckets) + metered.bytes
        report = PassReport(agency, differing, len(suspects), found, cost, deferred, unexplained)
        return self.novel(out), report

    def unexplained(self, agency: str, buckets: list[int], root: str, now: datetime) -> Outcome:
        """Buckets a rescan of the copy's rows still could not explain: said so, never passed over."""
        return self.novel(Outcome(findings=[findings.unexplained(agency, buckets, root, now)]))

    def drift(self, agency: str, rows: dict[int, str], now: datetime) -> Outcome:
        """Compare the copy's running digest with bucket hashes recomputed from its rows (`rows`).

        Only when the running digest reflects the same positions the rows do; a bucket that
        differs is a running digest that disagrees with its rows: a finding, closed once those
        buckets agree again (the sink's rolling verification rebuilds them from its rows).
        """
        published = self.digests.get(agency)
        if published is None:
            return Outcome()
        wrong = sorted(b for b, h in rows.items() if published.buckets[b] != h)
        out = Outcome(findings=self._drift_settled(agency, set(rows) - set(wrong), now))
        if wrong:
            found = findings.digest_drift(agency, wrong, published, now)
            self._drifting.setdefault(found.finding_id, set(wrong))
            out.findings.append(found)
        return self.novel(out)

    def _drift_settled(self, agency: str, agreeing: set[int], now: datetime) -> list[Finding]:
        """Open drifts whose every bucket the copy's running digest now agrees on again (the sink's
        own rolling verification rebuilt them): closed. One this run did not see open waits for a
        deep comparison (its buckets are known only to the run that found it)."""
        settled = []
        for detection in self.book.open_for(agency):
            buckets = self._drifting.get(detection.finding_id)
            if detection.kind == findings.DIGEST_DRIFT and buckets and buckets <= agreeing:
                how = f"the copy's running digest agrees with its rows again in buckets {sorted(buckets)}"
                settled.append(findings.resolved(detection, now, how))
                del self._drifting[detection.finding_id]
        return settled

    def verify(
        self, agency: str, buckets: list[int], probe: CopyProbe, now: datetime
    ) -> tuple[Outcome, PassReport, dict[int, str]]:
        """Rolling verification: re-read a few buckets of the copy from its rows and reconcile them.

        Catches edits made behind the sink's back (which its running digest cannot show) within
        one cycle over all buckets, at the cost of these buckets' leaves. Also returns the bucket
        hashes the rows gave, for `drift`.
        """
        hashes = self.expected.digest(agency).hex_buckets()
        read: dict[int, str] = {}
        for bucket in buckets:
            leaves = probe.leaves(bucket, self.expected.size)
            total = sum(leaf.value(lid) for lid, leaf in leaves.items()) % MODULUS
            read[bucket] = hashes[bucket] = f"{total:064x}"
        out, report = self.reconcile(agency, hashes, probe, now)
        return out, report, read

    def damaged(self, agency: str, probe: CopyProbe, now: datetime) -> Outcome:
        """Rows a front-line check could not read: a finding each (their repair follows narrowing)."""
        found = [findings.copy_damaged(agency, lid, damage, self._version(lid), now)
                 for lid, damage in probe.damaged().items()]  # fmt: skip
        return self.novel(Outcome(findings=found))

    def _version(self, listing_id: str) -> int:
        known = self.expected.known(listing_id)
        return known.version if known else 0

    def behind(self, agency: str) -> int:
        """View messages this reconciler has read that the copy's last digest had not reached."""
        digest, read = self.digests.get(agency), self._read_up_to.get(agency, {})
        reached = {int(p): o for p, o in digest.positions.items()} if digest else {}
        return sum(max(0, offset - reached.get(p, 0)) for p, offset in read.items())

    def _read_past(self, agency: str, copy_positions: dict[int, int]) -> bool:
        """True when this reconciler has read the view topic at least as far as the copy applied it.

        Otherwise the copy may hold a change the reconciler has not seen yet, and a
        "difference" would be the reconciler's lag, not the copy's fault.
        """
        read = self._read_up_to.get(agency, {})
        return all(read.get(p, 0) >= offset for p, offset in copy_positions.items())

    def _judge(self, agency: str, suspect: Suspect, now: datetime, shown_at: datetime) -> Difference | None:
        """A suspect is a difference unless a repair is on its way or the change is still in its SLA.

        Since when the copy is wrong: a change it never acknowledged was missed, wrong from when
        the view asked for it; a copy that acknowledged what the view holds (or a row the view
        never had) changed under its sink, wrong since the first digest that showed it.
        """
        lid = suspect.listing_id
        known = self.expected.known(lid)
        version = known.version if known else 0
        if self.repairs.pending(agency, lid) or self.acks.announced(agency, lid) > version:
            return None  # being repaired, or the ledger topic lags the view topic here: judge later
        row = self.expected.row(agency, lid) if suspect.expected is not None else None
        expected = Leaf.of(row) if row else None
        window = self.timing.sla.of("upsert" if row else "delete")
        acked = self.acks.acked(agency, lid)
        if known and now - known.since < window and acked < version:
            return None  # emitted recently and not acknowledged yet: the copy is merely behind
        ended_as = known.status if known is not None and known.status in ENDED else None
        since, basis = (known.since, DUE) if known is not None and acked < version else (shown_at, SHOWN)
        prior = self.book.open_stale(agency, lid)
        if prior is not None and prior.since is not None:  # still the fault found before (a restart)
            since, basis = prior.since, SHOWN if findings.family_of(prior) == CHANGED else DUE
        return Difference(agency, lid, problem_of(expected, suspect.actual), expected, suspect.actual,
                          version, ended_as, since, basis)  # fmt: skip

    def _plan(self, diff: Difference, now: datetime, out: Outcome) -> None:
        detection = findings.stale(diff, now)
        signature = (diff.agency, diff.listing_id, diff.expected_version, diff.actual)
        self._signatures[detection.finding_id] = signature
        if signature in self._repaired:  # repaired, acknowledged, and wrong again the same way
            out.findings.append(findings.escalated(detection, now))
        row = self.expected.row(diff.agency, diff.listing_id) if diff.expected else None
        change = repair_change(diff, detection, row, self.expected.state(diff.listing_id), now)
        self.repairs.open(detection, now)
        out.findings.append(detection)
        out.repairs.append(change)
