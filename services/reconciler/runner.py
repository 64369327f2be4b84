"""`accord reconcile run`: read the backbone, feed the engine, publish what it finds and repairs.

Its reader (on Kafka one plain consumer, `kafkalog.py`) reads `ledger`, every `views.<agency>`, every copy's
`copies.applied.<agency>` and `copies.digests.<agency>`, and `findings` (the findings tell it what was
already published, so a restart repeats none). All it folds from them is a snapshot on disk (`kept.py`)
committed with the position of every partition after each batch, so a restart reads only the log's
tail (the whole log when there is no snapshot, or it was of another log). It acts only once
it has read as far as the log reached when it started, and only while it holds the lease
(`lease.py`), so a second reconciler stands by warm instead of repairing everything twice; taking the
lease over, it first reads the findings its predecessor published. Deadlines and
anti-entropy then run on time, however busy the input: a deadline is judged only up to
the horizon the acknowledgements have been read to, so a reconciler behind on its input
never mistakes its own lag for a copy's fault. A bad message goes to `rejected` and the
loop goes on; a bug in the engine stops the process loudly. The reader, the outbox it
publishes to and the lease are given to it (`ports.py`; `on_kafka` builds the real ones), so
its decisions are unit-tested without a broker.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from services.core import metrics
from services.core.cloudevent import source
from services.core.copystore.probe import CopyProbe
from services.core.digest import root_of
from services.core.errors import AccordError, ContractError
from services.core.events import (
    CopyApplied,
    CopyDigest,
    Finding,
    ListingState,
    ViewChanged,
)  # fmt: skip
from services.core.health import Health, Progress
from services.core.kafka import EventProducer
from services.core.policy import Policy
from services.core.position import Position
from services.core.rejections import rejected
from services.core.serde import decode_full
from services.core.settings import KafkaSettings
from services.core.snapshot import Snapshot
from services.core.topics import RECONCILER, Topics
from services.reconciler.board import Board
from services.reconciler.engine import Outcome, PassReport, Reconciler
from services.reconciler.kafkalog import KafkaLog
from services.reconciler.kept import claim_snapshot
from services.reconciler.open_findings import Unsent
from services.reconciler.ports import Holder, LogReader, Outbox, Partition, Record
from services.reconciler.publishing import Publication
from services.reconciler.settings import ReconcilerSettings

BATCH = 500
BOARD_EVERY_S = 1.0
POLL_S = 0.2
NEVER = float("-inf")
DAWN = datetime.min.replace(tzinfo=UTC)


def subscription(topics: Topics, agencies: list[str]) -> list[str]:
    """Every topic the reconciler reads."""
    return [topics.ledger, *map(topics.views, agencies), *topics.all_copies_applied(agencies),
            *topics.all_copies_digests(agencies), topics.findings]  # fmt: skip


def on_kafka(
    kafka: KafkaSettings,
    settings: ReconcilerSettings,
    policy: Policy,
    probes: Mapping[str, CopyProbe],
    log: Callable[[str], None],
    lease: Holder | None = None,
    board: Board | None = None,
    snapshots: Path | None = None,
) -> Runner:
    """A runner on the real backbone: a `KafkaLog` reader and a confirmed-delivery producer; its
    state in a snapshot of its own under `snapshots` (None: in memory, the log read from its start)."""
    connection = kafka.connection
    reader, outbox = (
        KafkaLog(connection),
        EventProducer(connection, source(kafka.topics.namespace, RECONCILER)),
    )
    snapshot = claim_snapshot(snapshots, f"{kafka.topics.namespace or 'accord'}-expected")
    return Runner(kafka.topics, settings, policy, probes, log, reader, outbox, lease, board=board,
                  snapshot=snapshot)  # fmt: skip


class Runner:
    """Feeds the engine from `reader` and publishes through `outbox`, while `lease` is held
    (None: this reconciler is the only one). `clock` paces the checks (monotonic seconds)."""

    def __init__(
        self,
        topics: Topics,
        settings: ReconcilerSettings,
        policy: Policy,
        probes: Mapping[str, CopyProbe],
        log: Callable[[str], None],
        reader: LogReader,
        outbox: Outbox,
        lease: Holder | None = None,
        clock: Callable[[], float] = time.monotonic,
        board: Board | None = None,
        snapshot: Snapshot | None = None,
    ) -> None:
        self.topics, self.settings, self.probes, self.log = topics, settings, probes, log
        self.reader, self.lease, self.clock = reader, lease, clock
        self.board = board  # what the operator page shows (`board.py`), if one is served
        self.engine = Reconciler(policy, policy.enforcers, settings.timing(), snapshot)
        self._last: dict[str, float] = {}
        self._digest_seen: dict[str, datetime] = {}
        self._cursor: dict[str, int] = {}  # next bucket of each copy to verify from its rows
        self._partitions: dict[str, int] = {}  # topic -> partitions
        self._replay_to: dict[Partition, int] = {}  # the log's end when we started
        self._read_to: dict[Partition, int] = {}  # next offset, per partition read
        self._acks_at: dict[Partition, datetime] = {}  # acks partition -> time of the last ack read
        self.replayed = False
        self.read = 0
        self.tracker = Progress("reconciler", settings.stall_after_s)
        self._compared: dict[str, str] = {}  # agency -> time of its last digest comparison
        self._unsent = Unsent(self.engine.snapshot.db)  # decided while another may be publishing
        self._takeover: dict[Partition, int] | None = None  # `findings`' end when the lease was taken
        self._ticking = False  # a tick publishes all it decided, once allowed to (`tick`)
        self.out = Publication(topics, outbox, self._unsent, self._partitions, log, clock)

    def run(self, stop: threading.Event) -> None:
        try:
            self.start()
            while not stop.is_set():
                self.step()
        finally:
            self.reader.close()
            self.out.flush()
            self.log(self.progress())
            self.log(self.engine.times.table())
            self.engine.expected.close()

    def start(self) -> None:
        """Open every input from where the snapshot left off (from its start if it was emptied, of
        another log, or new) and note how far the log reached then."""
        snapshot, agencies = self.engine.snapshot, self.engine.expected.agencies
        ends = self.reader.open(subscription(self.topics, agencies), snapshot)
        self._read_to = snapshot.positions()
        views = {self.topics.views(a): a for a in agencies}
        read: dict[str, dict[int, int]] = {}
        for (topic, partition), offset in self._read_to.items():
            if topic in views:
                read.setdefault(views[topic], {})[partition] = offset
        self.engine.resume(read)
        self._unsent.reload()
        if self.board is not None:  # what was open before the snapshot, shown as open cases again
            for detection in self.engine.book.detections():
                self.board.note(detection, detection.detected_at)
            for digest in self.engine.digests.values():
                self.board.note(digest, digest.taken_at)
        for topic, _ in ends:
            self._partitions[topic] = self._partitions.get(topic, 0) + 1
        self._replay_to = {tp: high for tp, high in ends.items() if high > 0}

    def step(self, now: datetime | None = None) -> None:
        """Read one batch; once the log as it was at the start is read, act on time; then commit what
        was read and decided with the positions read (a crash before that reads the batch again).

        `now` (a test's) is otherwise the time after the batch is read: a digest read in it may
        have been taken a moment ago, and must not look taken after the check that reads it."""
        batch = self.reader.read(BATCH, POLL_S)
        for record in batch:
            self.handle(record)
        if batch:
            self.tracker.advance(read=len(batch))
        if self._caught_up_once():
            at = now or datetime.now(UTC)
            self.tick(at, self.acks_horizon(at))
        self.out.flush()  # a `rejected` record queued is confirmed (or kept) before its input's position
        if batch or self.engine.changed():  # is committed, and a finding refused now is held with it
            self.engine.commit(self._read_to)

    def _caught_up_once(self) -> bool:
        """True once everything in the log when we started is read (findings included): before
        that, a deadline or a difference may already be answered further on, or already reported."""
        if not self.replayed:
            self.replayed = all(self._read_to.get(tp, 0) >= end for tp, end in self._replay_to.items())
            if self.replayed:
                self.log(f"replayed the log ({self.read} messages): {self.progress()}")
        return self.replayed

    def acks_horizon(self, now: datetime) -> datetime:
        """How far in time the acknowledgements are read: a partition of a copy's acks topic read to
        its end, up to now; one with more to read, up to its last acknowledgement read."""
        horizon = now
        for topic in self.topics.all_copies_applied(self.engine.expected.agencies):
            for partition in range(self._partitions.get(topic, 0)):
                high = self.reader.end(topic, partition)
                if high < 0 or self._read_to.get((topic, partition), 0) < high:
                    horizon = min(horizon, self._acks_at.get((topic, partition), DAWN))
        return horizon

    # --- reading -------------------------------------------------------------------

    def handle(self, record: Record) -> None:
        self.read += 1
        topic, partition, offset = record.topic, record.partition, record.offset
        self._read_to[(topic, partition)] = offset + 1
        try:
            event = decode_full(record.value, topic, partition, offset).event
        except ContractError as e:
            self._reject(record, e)
            return
        if isinstance(event, CopyApplied | CopyDigest) and not self._own_topic(event, record):
            return
        at = record.at or event.envelope.recorded_at
        if self.board is not None:
            self.board.note(event, at)
        if isinstance(event, ListingState):
            self.engine.on_state(event, at, record.value)
        elif isinstance(event, ViewChanged):
            self.publish(self.engine.on_view(event, partition, offset, at))
        elif isinstance(event, CopyApplied):
            self._acks_at[(topic, partition)] = at
            self.publish(self.engine.on_applied(event))
        elif isinstance(event, CopyDigest):
            self.engine.on_digest(event, record.value)
        elif isinstance(event, Finding):
            self._unsent.drop(event.finding_id)  # in the log: whoever published it, not again
            self.publish(self.engine.on_finding(event))
        else:
            self.log(f"ignored a {type(event).__name__} on {topic}: not an input of the reconciler")

    def _own_topic(self, event: CopyApplied | CopyDigest, record: Record) -> bool:
        """A copy's report counts only on that copy's own topic (ACLs let only it write there)."""
        if event.copy_agency == self.topics.reporting_copy(record.topic):
            return True
        name = type(event).__name__
        self._reject(
            record, ContractError(f"a {name} for {event.copy_agency} on {record.topic}: not its topic")
        )
        return False

    def _reject(self, record: Record, error: ContractError) -> None:
        """A message nobody can read goes to `rejected` with the reason; the next one is read as usual."""
        self.log(f"REJECTED {error}")
        key = (record.key or b"").decode(errors="replace")
        where = Position(record.topic, record.partition, record.offset)
        refusal = rejected(RECONCILER, where, "contract", str(error), record.value, datetime.now(UTC), key)
        if self._acting():
            self.out.reject(key, refusal)

    # --- acting, on time -------------------------------------------------------------

    def _acting(self) -> bool:
        return self.lease is None or self.lease.held()

    def _publishing(self) -> bool:
        """Whether this runner may publish findings and repairs now: it holds the lease, has read
        the log as it was at the start, and has read `findings` as far as they reached when it
        took the lease (what the reconciler before it published, it must know first)."""
        if not self._acting():
            if self._takeover is not None:
                self.log("lost the lease: standing by")
            self._takeover = None
            return False
        if not self.replayed:
            return False
        if self._takeover is None:
            found = [(self.topics.findings, p) for p in range(self._partitions.get(self.topics.findings, 0))]
            ends = {tp: self.reader.end(*tp, fresh=True) for tp in found}
            if any(end < 0 for end in ends.values()):
                return False  # not known yet: asked again next time
            self._takeover = ends
            self.log(f"holds the lease: acts once the findings are read to {sorted(ends.values())}")
        return all(self._read_to.get(tp, 0) >= end for tp, end in self._takeover.items())

    def tick(self, now: datetime, acks_read_to: datetime | None = None) -> None:
        """Act on time, while publishing is allowed; what a tick decides is then published whole
        (the lease is asked once: a rebalance waits for this runner's next poll of it)."""
        self._show(now)
        if not self._publishing():
            return
        self._ticking = True
        try:
            self._act(now, acks_read_to)
        finally:
            self._ticking = False

    def _act(self, now: datetime, acks_read_to: datetime | None) -> None:
        if self.out.due():
            self.out.send_kept()
        if self._due("check", self.settings.check_interval_s):
            self.publish(self.engine.check(now, acks_read_to))
            for agency, probe in self.probes.items():
                self._verify(agency, probe, now)
        for agency, probe in self.probes.items():
            self._anti_entropy(agency, probe, now)
        for kind, count in self.engine.book.open_by_kind().items():
            metrics.FINDINGS_OPEN.labels(kind).set(count)
        if self._due("report", self.settings.report_interval_s, first=False):
            self.log(self.progress())
            self.log(self.engine.times.table())

    def _show(self, now: datetime) -> None:
        """The operator page's figures, judged here, in the runner's thread (`board.py`)."""
        if self.board is None or not self._due("board", BOARD_EVERY_S):
            return
        agencies = self.engine.expected.agencies
        pending = {a: 0 for a in agencies} | self.engine.acks.pending_by_agency()
        behind = {a: self.engine.behind(a) for a in agencies}
        self.board.figures(now, pending, behind, self.engine.times.summary())

    def progress(self) -> str:
        """Health is progress: messages read, changes awaiting acknowledgement, repairs in flight."""
        engine = self.engine
        parts = [
            f"{self.read} messages read",
            f"{len(engine.expected)} listings",
            f"{engine.acks.pending()} changes awaiting acknowledgement",
            f"{len(engine.repairs)} repairs open",
            f"{len(engine.book)} findings open",
        ]
        return "progress: " + ", ".join(parts)

    def health(self) -> Health:
        """Progress is the input read against the log's end (asked from the ops thread: copies)."""
        partitions = [(topic, p) for topic, count in list(self._partitions.items()) for p in range(count)]
        read_to = dict(self._read_to)
        lag = {tp: max(0, self.reader.end(*tp) - read_to.get(tp, 0)) for tp in partitions}
        self.tracker.note(replayed=self.replayed, findings_open=len(self.engine.book),
                            repairs_open=len(self.engine.repairs))  # fmt: skip
        health = self.tracker.judge(lag, self.out.trouble())
        metrics.record(health, lag)
        return health

    def _due(self, name: str, every: float, first: bool = True) -> bool:
        clock = self.clock()
        last = self._last.setdefault(name, NEVER if first else clock)
        if clock - last < every:
            return False
        self._last[name] = clock
        return True

    def verify_step(self) -> int:
        """Buckets verified from a copy's rows per check, so that all are within `verify_cycle_s`."""
        size = self.engine.expected.size
        return min(size, math.ceil(size * self.settings.check_interval_s / self.settings.verify_cycle_s))

    def _verify(self, agency: str, probe: CopyProbe, now: datetime) -> None:
        """Rolling verification of the next few buckets, the damage front-line checks met, and drift;
        once a cycle, the rows filed under a bucket their id does not fall in (a full read of ids).
        What was planned before a failing read is still published (see `_compare`)."""
        size, start = self.engine.expected.size, self._cursor.get(agency, 0)
        buckets = [(start + i) % size for i in range(self.verify_step())]
        self._cursor[agency] = (start + len(buckets)) % size
        planned = Outcome()
        try:
            planned += self.engine.damaged(agency, probe, now)
            outcome, report, read = self.engine.verify(agency, buckets, probe, now)
            planned += outcome
            self._log_pass(report, "verified from its rows")
            if self._same_positions(agency, probe):
                planned += self.engine.drift(agency, read, now)
            if start == 0 and probe.misplaced():  # once a cycle: rows filed under a bucket not their own
                self._compare(agency, probe, now, deep=True, planned=planned)
        except AccordError as e:
            self.log(f"verification of {agency}'s copy failed, will retry: {e}")
        self.publish(planned)

    def _same_positions(self, agency: str, probe: CopyProbe) -> bool:
        """Whether the copy's last published digest reflects the positions its rows are at now."""
        published = self.engine.digests.get(agency)
        if published is None:
            return False
        return {int(p): o for p, o in published.positions.items()} == probe.positions()

    def _anti_entropy(self, agency: str, probe: CopyProbe, now: datetime) -> None:
        published = self.engine.digests.get(agency)
        fresh = published is not None and published.taken_at != self._digest_seen.get(agency)
        if not (fresh or self._due(f"pass:{agency}", self.settings.antientropy_interval_s)):
            return
        deep = published is None or self._due(f"deep:{agency}", self.settings.deep_interval_s)
        if published is not None:
            self._digest_seen[agency] = published.taken_at
        planned = Outcome()
        try:
            self._compare(agency, probe, now, deep, planned)
            metrics.COMPARISONS.labels(agency).inc()
            self._compared[agency] = now.isoformat()
            self.tracker.note(last_comparison=dict(self._compared))
        except AccordError as e:
            self.log(f"anti-entropy on {agency}'s copy failed, will retry: {e}")
        self.publish(planned)

    def _compare(self, agency: str, probe: CopyProbe, now: datetime, deep: bool, planned: Outcome) -> None:
        """One digest comparison, into `planned`; a mismatch the copy's running digest cannot explain
        is looked at again in a rescan of its rows, and what a rescan cannot explain is reported.

        Every pass's outcome is kept in `planned`, also that of a pass looked at again or cut short
        by a failing read: the engine opened its repairs when it planned them, so a repair dropped
        would never be sent, yet stay open, and the listing, judged "being repaired", would never
        be repaired (seen under load).
        """
        published = self.engine.digests.get(agency)
        if not deep and published is not None:
            outcome, report = self.engine.reconcile(agency, published.buckets, probe, now, published.taken_at)
            planned += outcome
            if not report.unexplained:
                self._log_pass(report, "from its digest")
                return
        rescan = probe.digest()
        same = self._same_positions(agency, probe)
        if self.engine.healthy(agency, rescan):
            planned += self.engine.resolve(agency, now, "a rescan of the copy's rows equals its view")
        else:
            outcome, report = self.engine.reconcile(agency, rescan, probe, now)
            planned += outcome
            if report.unexplained:  # the sink may have written between the rescan and the leaves: again
                rescan = probe.digest()
                outcome, report = self.engine.reconcile(agency, rescan, probe, now)
                planned += outcome
            self._log_pass(report, "from a rescan of its rows")
            if report.unexplained:
                planned += self.engine.unexplained(agency, report.unexplained, root_of(rescan), now)
        if same:
            planned += self.engine.drift(agency, dict(enumerate(rescan)), now)

    def _log_pass(self, report: PassReport, how: str) -> None:
        if report.differences or report.unexplained:
            self.log(f"{report.agency} ({how}): {len(report.differences)} stale listings in "
                     f"{report.differing_buckets} buckets, {len(report.unexplained)} unexplained "
                     f"{report.unexplained}, {report.bytes_exchanged} bytes exchanged")  # fmt: skip

    def publish(self, outcome: Outcome) -> None:
        """Send what the engine decided. Findings decided while this runner may not publish (a
        standby, a replay, a takeover still reading) are kept, and sent once it may, unless read in
        the log first: the engine counts them as published, so none is lost to a lease handover.
        Repairs are planned only in a tick, which runs only while publishing is allowed."""
        if not (outcome.findings or outcome.repairs):
            return
        if not (self._ticking or self._publishing()):
            self._unsent.hold(outcome.findings)
            return
        self.out.send(outcome)
