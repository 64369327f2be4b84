"""The runner's decisions, driven without a broker: what it does with each kind of message, when
it acts (after the replay, while it holds the lease), what it publishes and where.

The runner is the real one; only its ports are in-process (`memory_log.py`). The broker-backed
wiring is proven by `tests/integration/reconciler/`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from services.core.events import Finding, ListingEvent, ListingState, Rejected, ViewChanged
from services.core.kafka import partition_for
from services.core.listing import evolve
from services.core.policy import Policy
from services.core.serde import decode
from services.core.snapshot import Snapshot
from services.core.topics import Topics, copy_key
from services.core.views import view_change
from services.reconciler.kept import SCHEMA, TABLES
from services.reconciler.repair import repair_key
from services.reconciler.runner import Runner
from services.reconciler.settings import ReconcilerSettings
from tests.support.factory import T0, Ledgerbook, policy_with_keys
from tests.unit.reconciler.memory_log import Flag, MemoryLog
from tests.unit.reconciler.support import MemoryCopy, applied

CA, RAIL = "civil-aviation", "railway"
SETTINGS = ReconcilerSettings(listing_sla_s=60, revocation_sla_s=10, repair_sla_s=30)
LATE = T0 + timedelta(minutes=5)  # past every SLA of a change made at T0


@dataclass
class Backbone:
    """The ledger's side of the log, written by hand: states, view changes and copies' acks."""

    policy: Policy
    book: Ledgerbook
    log: MemoryLog
    topics: Topics = field(default_factory=lambda: Topics(""))
    states: dict[str, ListingState] = field(default_factory=dict)

    def record(self, event: ListingEvent, at: datetime = T0) -> dict[str, tuple[ViewChanged, int, int]]:
        """The ledger's state and every entitled view change of `event`; where each change landed."""
        listing_id = event.envelope.listing_id
        before, after = self.states.get(listing_id), evolve(self.states.get(listing_id), event)
        self.states[listing_id] = after
        self.log.append(self.topics.ledger, listing_id, after, at)
        landed = {}
        for agency in (CA, RAIL):
            if change := view_change(before, after, agency, self.policy, at):
                where = self.log.append(self.topics.views(agency), listing_id, change, at)
                landed[agency] = (change, where.partition, where.offset)
        return landed

    def ack(
        self, change: ViewChanged, partition: int, offset: int, at: datetime = T0, topic: str = ""
    ) -> None:
        ack = applied(change, offset, at + timedelta(seconds=1), partition)
        listing_id = change.envelope.listing_id
        where = topic or self.topics.copies_applied(change.view_agency)
        self.log.append(where, copy_key(change.view_agency, listing_id), ack, at + timedelta(seconds=1))

    def runner(
        self,
        lease: Flag | None = None,
        probes: dict[str, MemoryCopy] | None = None,
        snapshot: Path | None = None,
        log: MemoryLog | None = None,
        clock: Callable[[], float] | None = None,
    ) -> Runner:
        """A runner over the log (`log`: another reader and outbox of the same topics, a second
        process); its `clock` jumps an hour a reading unless given: every check due at every tick."""
        hours = iter(range(0, 10**6, 3600))
        kept = Snapshot(snapshot, SCHEMA, TABLES) if snapshot else None
        port = log or self.log
        return Runner(self.topics, SETTINGS, self.policy, probes or {}, lambda _: None, port, port,
                      lease, clock=clock or (lambda: float(next(hours))), snapshot=kept)  # fmt: skip

    def findings(self) -> list[tuple[str, str, str]]:
        found = [e for e in self.log.events(self.topics.findings) if isinstance(e, Finding)]
        return [(f.kind, f.copy_agency, f.envelope.listing_id) for f in found]


@pytest.fixture
def backbone(tmp_path: Path) -> Backbone:
    policy, keystore = policy_with_keys(tmp_path / "keys")
    return Backbone(policy, Ledgerbook(keystore), MemoryLog(partitions=3))


def started(runner: Runner, at: datetime, steps: int = 1) -> Runner:
    runner.start()
    for _ in range(steps):
        runner.step(at)
    return runner


def test_an_acknowledged_change_is_settled_and_an_unacknowledged_one_is_reported_after_its_sla(
    backbone: Backbone,
) -> None:
    landed = backbone.record(backbone.book.issue("L-1"))
    backbone.ack(*landed[CA])
    runner = started(backbone.runner(), T0 + timedelta(seconds=30))
    assert backbone.findings() == []  # railway still has time
    runner.step(LATE)
    assert backbone.findings() == [("missing_ack", RAIL, "L-1")]
    [record] = backbone.log.records(backbone.topics.findings)
    assert record.key == copy_key(RAIL, "L-1").encode()


def test_nothing_is_judged_before_the_log_as_it_was_at_the_start_is_read(backbone: Backbone) -> None:
    """Read one message a batch: the ack comes after the change, so a runner judging before it
    had read the whole log would report a missing ack the log already answers."""
    for landed in backbone.record(backbone.book.issue("L-1")).values():
        backbone.ack(*landed)
    backbone.log.per_read = 1
    runner = backbone.runner()
    runner.start()
    for _ in range(5):  # five messages, one a batch: replayed with the fifth
        assert not runner.replayed
        runner.step(LATE)
        assert backbone.findings() == []
    assert runner.replayed
    for _ in range(3):
        runner.step(LATE)
    assert backbone.findings() == []
    assert runner.engine.acks.pending() == 0


def test_a_restarted_runner_publishes_no_finding_already_in_the_log(backbone: Backbone) -> None:
    backbone.record(backbone.book.issue("L-1", measures=("flight_ban",)))
    started(backbone.runner(), LATE)
    assert backbone.findings() == [("missing_ack", CA, "L-1")]
    started(backbone.runner(), LATE + timedelta(minutes=1), steps=3)
    assert backbone.findings() == [("missing_ack", CA, "L-1")]


def test_a_message_nobody_can_read_goes_to_rejected_and_the_next_one_is_read(backbone: Backbone) -> None:
    garbage = backbone.log.append(backbone.topics.views(CA), "L-0", b"\x00not avro", T0)
    landed = backbone.record(backbone.book.issue("L-1", measures=("flight_ban",)))
    runner = started(backbone.runner(), T0)
    backbone.log.flush()  # the refusal is queued like any send, confirmed at the next flush
    [rejected] = backbone.log.events(backbone.topics.rejected)
    assert isinstance(rejected, Rejected) and rejected.reason_code == "contract"
    assert (rejected.source_topic, rejected.partition, rejected.offset) == (
        garbage.topic, garbage.partition, garbage.offset
    )  # fmt: skip
    assert rejected.payload == b"\x00not avro" and rejected.envelope.listing_id == "L-0"
    assert runner.engine.acks.pending() == 1  # the change after the bad message was read
    backbone.ack(*landed[CA])
    runner.step(LATE)
    assert backbone.findings() == []


def test_an_ack_on_another_copys_topic_is_refused_and_counts_for_nobody(backbone: Backbone) -> None:
    landed = backbone.record(backbone.book.issue("L-1"))
    backbone.ack(*landed[CA])
    backbone.ack(*landed[RAIL], topic=backbone.topics.copies_applied(CA))  # civil aviation speaks for railway
    started(backbone.runner(), LATE)
    assert backbone.findings() == [("missing_ack", RAIL, "L-1")]
    [rejected] = backbone.log.events(backbone.topics.rejected)
    assert isinstance(rejected, Rejected) and "not its topic" in rejected.reason
    assert rejected.source_topic == backbone.topics.copies_applied(CA)


def test_a_standby_without_the_lease_stays_warm_and_publishes_nothing_until_it_holds_it(
    backbone: Backbone,
) -> None:
    backbone.record(backbone.book.issue("L-1", measures=("flight_ban",)))
    backbone.log.append(backbone.topics.views(CA), "L-0", b"garbage", T0)
    lease = Flag(on=False)
    runner = started(backbone.runner(lease), LATE, steps=3)
    backbone.log.flush()
    assert backbone.findings() == [] and backbone.log.events(backbone.topics.rejected) == []
    assert runner.engine.acks.pending() == 1  # read and kept, not acted on
    lease.on = True
    runner.step(LATE)
    assert backbone.findings() == [("missing_ack", CA, "L-1")]


@dataclass
class PartitionedCopy(MemoryCopy):
    """A memory copy that knows how far it applied each partition of its view."""

    read_to: dict[int, int] = field(default_factory=dict)

    def take(self, change: ViewChanged, partition: int, offset: int) -> None:
        self.apply(change)
        self.read_to[partition] = offset + 1

    def positions(self) -> dict[int, int]:
        return dict(self.read_to)


def acknowledged_copy(backbone: Backbone, listings: int = 6) -> PartitionedCopy:
    """Civil aviation's copy of `listings` issued listings, each change acknowledged by its copy."""
    copy = PartitionedCopy(CA)
    for i in range(listings):
        for agency, (change, partition, offset) in backbone.record(backbone.book.issue(f"L-{i}")).items():
            if agency == CA:
                copy.take(change, partition, offset)
            backbone.ack(change, partition, offset)
    return copy


def test_a_repair_goes_to_the_listings_own_partition_under_its_repair_key(backbone: Backbone) -> None:
    copy = acknowledged_copy(backbone)
    del copy.rows["L-4"]  # deleted by hand: only the rows can tell
    started(backbone.runner(probes={CA: copy}), LATE)
    assert ("stale_copy", CA, "L-4") in backbone.findings()
    views = backbone.log.records(backbone.topics.views(CA))
    repairs = [r for r in views if r.key == repair_key("L-4").encode()]
    assert [r.partition for r in repairs] == [partition_for("L-4", 3)]
    repair = decode(repairs[0].value)
    assert (
        isinstance(repair, ViewChanged) and repair.op == "upsert" and repair.envelope.agency == "reconciler"
    )


def test_a_finding_the_broker_refused_is_kept_across_a_restart_and_published_once_it_accepts(
    backbone: Backbone, tmp_path: Path
) -> None:
    """`flush` raising `DeliveryRefused`: the finding was never in the log, so it is held (in the
    snapshot: a restart keeps it) and published at a later tick, once."""
    backbone.record(backbone.book.issue("L-1", measures=("flight_ban",)))
    backbone.log.refusing = {backbone.topics.findings}
    first = started(backbone.runner(snapshot=tmp_path / "expected.sqlite3"), LATE, steps=2)
    assert backbone.findings() == []
    first.engine.expected.commit(dict(backbone.log.positions))  # as a batch would: the held finding with it
    first.engine.expected.close()
    backbone.log.refusing = set()
    started(backbone.runner(snapshot=tmp_path / "expected.sqlite3"), LATE, steps=3)
    assert backbone.findings() == [("missing_ack", CA, "L-1")]


def test_a_repair_and_a_rejection_the_broker_refused_are_sent_again_at_the_next_tick(
    backbone: Backbone,
) -> None:
    copy = acknowledged_copy(backbone)
    del copy.rows["L-4"]
    backbone.log.append(backbone.topics.views(CA), "L-0", b"garbage", T0)
    backbone.log.refusing = {backbone.topics.views(CA), backbone.topics.rejected}
    runner = started(backbone.runner(probes={CA: copy}), LATE)
    views = backbone.topics.views(CA)
    repaired = [r for r in backbone.log.records(views) if r.key == repair_key("L-4").encode()]
    assert repaired == [] and backbone.log.events(backbone.topics.rejected) == []
    backbone.log.refusing = set()
    runner.step(LATE)
    backbone.log.flush()
    repaired = [r for r in backbone.log.records(views) if r.key == repair_key("L-4").encode()]
    assert [r.partition for r in repaired] == [partition_for("L-4", 3)]
    [rejected] = backbone.log.events(backbone.topics.rejected)
    assert isinstance(rejected, Rejected) and rejected.payload == b"garbage"


def test_a_send_the_broker_keeps_refusing_is_tried_after_a_doubling_wait_and_shown_in_health(
    backbone: Backbone,
) -> None:
    """A record refused for good (too large for its topic, an ACL taken away) is kept, but not
    re-sent at every tick: after 1 s, then 2, 4…; from the third refusal in a row health says why."""
    now = [0.0]
    backbone.record(backbone.book.issue("L-1", measures=("flight_ban",)))
    backbone.log.refusing = {backbone.topics.findings}
    runner = started(backbone.runner(clock=lambda: now[0]), LATE)  # refused once: again from t=1
    assert runner.health().healthy

    def refusals_at(t: float) -> str:
        now[0] = t
        runner.step(LATE)
        return " ".join(runner.health().reasons)

    assert refusals_at(0.9) == ""  # not due: nothing sent
    assert refusals_at(1.0) == ""  # refused twice: again from t=3
    assert refusals_at(2.9) == ""
    assert "refused 3 sends in a row (denied)" in refusals_at(3.0)  # again from t=7
    backbone.log.refusing = set()
    assert "refused 3 sends in a row" in refusals_at(6.9)
    assert backbone.findings() == []
    assert refusals_at(7.0) == ""
    assert backbone.findings() == [("missing_ack", CA, "L-1")]


def test_a_rejected_record_is_confirmed_before_the_position_of_its_input_is_committed(
    backbone: Backbone,
) -> None:
    """Mid-replay no tick flushes; the step must, or a crash after its commit loses the record."""
    for i in range(3):
        backbone.log.append(backbone.topics.views(CA), f"L-{i}", b"garbage", T0)
    backbone.log.per_read = 1
    runner = started(backbone.runner(), LATE)
    assert not runner.replayed
    [rejected] = backbone.log.events(backbone.topics.rejected)
    assert isinstance(rejected, Rejected) and rejected.payload == b"garbage"


def test_acks_are_judged_only_up_to_the_last_one_read_while_more_are_waiting(backbone: Backbone) -> None:
    landed = backbone.record(backbone.book.issue("L-1", measures=("flight_ban",)))
    runner = started(backbone.runner(), T0)
    backbone.ack(*landed[CA], at=T0 - timedelta(seconds=1))  # in the log, not read yet
    assert runner.acks_horizon(LATE) == datetime.min.replace(tzinfo=T0.tzinfo)
    runner.step(LATE)
    assert runner.acks_horizon(LATE) == LATE
    assert backbone.findings() == []


def test_run_reads_until_stopped_then_flushes_closes_its_reader_and_logs_its_progress(
    backbone: Backbone,
) -> None:
    backbone.record(backbone.book.issue("L-1", measures=("flight_ban",)))
    stop, lines = threading.Event(), list[str]()
    backbone.log.idle = stop.set
    runner = backbone.runner()
    runner.log = lines.append
    runner.run(stop)  # the real clock is long past T0: the change is overdue
    assert backbone.findings() == [("missing_ack", CA, "L-1")]
    assert backbone.log.closed and backbone.log.queued == []
    assert any(line.startswith("progress: 3 messages read") for line in lines)


def test_a_restart_reads_the_ledger_from_its_snapshot_on_and_keeps_every_deadline(
    backbone: Backbone, tmp_path: Path
) -> None:
    """A snapshot older than the log's tail: the runner reads only the ledger records after it, yet
    holds the same expected views as a runner that read it all, and still watches an objection
    filed before the snapshot."""
    backbone.record(backbone.book.issue("L-1"))
    backbone.record(backbone.book.object("L-1"))
    first = started(backbone.runner(snapshot=tmp_path / "expected.sqlite3"), T0)
    first.engine.expected.close()
    backbone.record(backbone.book.issue("L-2"))
    again = backbone.runner(snapshot=tmp_path / "expected.sqlite3")
    again.start()
    ledger = [tp for tp in backbone.log.positions if tp[0] == backbone.topics.ledger]
    assert sum(backbone.log.positions[tp] for tp in ledger) == 2  # L-1's two states are not read again
    for _ in range(3):
        again.step(T0)
    whole = started(backbone.runner(), T0)
    for agency in (CA, RAIL):
        assert again.engine.expected.digest(agency) == whole.engine.expected.digest(agency)
    assert len(again.engine.expected) == 2
    again.step(T0 + timedelta(days=16))
    assert ("overdue_objection", "L-1") in [(kind, lid) for kind, _, lid in backbone.findings()]


def test_a_batch_of_the_expected_views_cut_short_counts_once_when_read_again(
    backbone: Backbone, tmp_path: Path
) -> None:
    """Nothing lost, nothing applied twice: states taken but never committed are gone after a crash,
    and taking them again (and once more) gives the digest of taking them once."""
    path = tmp_path / "expected.sqlite3"
    one = evolve(None, backbone.book.issue("L-1"))
    two = evolve(None, backbone.book.issue("L-2"))
    views = backbone.runner(snapshot=path).engine.expected
    views.update(one, T0)
    views.commit({(backbone.topics.ledger, 0): 1})
    views.update(two, T0)
    views.close()  # the process dies before the batch's commit
    again = backbone.runner(snapshot=path).engine.expected
    assert len(again) == 1 and again.snapshot.positions() == {(backbone.topics.ledger, 0): 1}
    for state in (one, two, two):
        again.update(state, T0)
    whole = backbone.runner().engine.expected
    for state in (one, two):
        whole.update(state, T0)
    assert again.digest(CA) == whole.digest(CA) and len(again) == 2
