"""A lease handed over, or a restart, in the middle of a repair: the reconciler that acts next
awaits the repair its predecessor sent, and the copy's acknowledgement of it is reported once,
whoever read it first (the flake of `test_two_reconcilers_repair_once_and_the_second_takes_over`:
the lease moved to a reconciler that joined late, after the leader had sent its repair).

Two real runners read one in-process log, each through its own reader (`memory_log.py`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.core.events import ViewChanged
from services.core.serde import decode
from services.reconciler.board import Board
from services.reconciler.repair import repair_key
from services.reconciler.runner import Runner
from tests.support.factory import T0, Ledgerbook, policy_with_keys
from tests.unit.reconciler.memory_log import Flag, MemoryLog
from tests.unit.reconciler.test_reconciler_runner import (
    CA,
    LATE,
    Backbone,
    PartitionedCopy,
    acknowledged_copy,
    started,
)


@pytest.fixture
def backbone(tmp_path: Path) -> Backbone:
    policy, keystore = policy_with_keys(tmp_path / "keys")
    return Backbone(policy, Ledgerbook(keystore), MemoryLog(partitions=3))


@pytest.fixture
def copy(backbone: Backbone) -> PartitionedCopy:
    """Civil aviation's copy of six listings, each acknowledged."""
    return acknowledged_copy(backbone)


def second_process(backbone: Backbone) -> MemoryLog:
    return MemoryLog(partitions=backbone.log.partitions, topics=backbone.log.topics)


def repairs_of(backbone: Backbone, listing_id: str) -> list[tuple[ViewChanged, int, int]]:
    key = repair_key(listing_id).encode()
    found = [(decode(r.value), r.partition, r.offset) for r in backbone.log.records(backbone.topics.views(CA))
             if r.key == key]  # fmt: skip
    return [(change, p, o) for change, p, o in found if isinstance(change, ViewChanged)]


def repaired_by_hand(backbone: Backbone, copy: PartitionedCopy, lease: Flag) -> tuple[Runner, Runner, Flag]:
    """Two reconcilers, the first holding `lease`; L-4 deleted from the copy by hand, the first's
    repair sent (not applied yet), the standby has read it."""
    standby = Flag(on=False)
    first = started(backbone.runner(lease, {CA: copy}), LATE)
    second = started(backbone.runner(standby, {CA: copy}, log=second_process(backbone)), LATE)
    del copy.rows["L-4"]
    first.step(LATE)
    assert backbone.findings() == [("stale_copy", CA, "L-4")]
    second.step(LATE)
    return first, second, standby


def apply_the_repair(backbone: Backbone, copy: PartitionedCopy, listing_id: str = "L-4") -> None:
    [(repair, partition, offset)] = repairs_of(backbone, listing_id)
    copy.take(repair, partition, offset)
    backbone.ack(repair, partition, offset)


def test_a_standby_taking_the_lease_over_reports_its_predecessors_repair_acknowledged_once(
    backbone: Backbone, copy: PartitionedCopy
) -> None:
    lease = Flag(on=True)
    first, second, standby = repaired_by_hand(backbone, copy, lease)
    lease.on, standby.on = False, True  # the lease moves before the copy applies the repair
    apply_the_repair(backbone, copy)
    for _ in range(3):
        first.step(LATE)
        second.step(LATE)
    assert backbone.findings() == [("stale_copy", CA, "L-4"), ("repaired", CA, "L-4")]
    assert len(repairs_of(backbone, "L-4")) == 1  # awaited, not sent again


def test_an_acknowledgement_read_by_the_standby_before_it_takes_over_is_reported_once_it_has(
    backbone: Backbone, copy: PartitionedCopy
) -> None:
    """The standby reads the ack while the leader still holds the lease; the lease moves before the
    leader reads it: neither may drop the finding as published."""
    lease = Flag(on=True)
    first, second, standby = repaired_by_hand(backbone, copy, lease)
    apply_the_repair(backbone, copy)
    second.step(LATE)  # a standby: what it finds is not its to publish yet
    assert backbone.findings() == [("stale_copy", CA, "L-4")]
    lease.on, standby.on = False, True
    first.step(LATE)  # no longer the leader
    assert backbone.findings() == [("stale_copy", CA, "L-4")]
    for _ in range(2):
        second.step(LATE)
        first.step(LATE)
    assert backbone.findings() == [("stale_copy", CA, "L-4"), ("repaired", CA, "L-4")]


def test_a_finding_the_leader_published_is_not_published_again_by_the_standby_that_found_it_too(
    backbone: Backbone, copy: PartitionedCopy
) -> None:
    lease = Flag(on=True)
    first, second, standby = repaired_by_hand(backbone, copy, lease)
    apply_the_repair(backbone, copy)
    second.step(LATE)  # found by the standby first, kept
    first.step(LATE)  # and published by the leader
    lease.on, standby.on = False, True
    for _ in range(3):
        second.step(LATE)
    assert backbone.findings() == [("stale_copy", CA, "L-4"), ("repaired", CA, "L-4")]


def test_a_restart_awaits_the_repair_in_the_log_and_reports_its_acknowledgement_once(
    backbone: Backbone, copy: PartitionedCopy
) -> None:
    first = started(backbone.runner(probes={CA: copy}), LATE)
    del copy.rows["L-4"]
    first.step(LATE)  # found and repaired; the process dies
    apply_the_repair(backbone, copy)  # applied while no reconciler runs
    again = started(backbone.runner(probes={CA: copy}, log=second_process(backbone)), LATE, steps=3)
    assert backbone.findings() == [("stale_copy", CA, "L-4"), ("repaired", CA, "L-4")]
    assert len(repairs_of(backbone, "L-4")) == 1 and len(again.engine.repairs) == 0


def test_a_restart_from_its_snapshot_reads_only_the_tail_and_closes_what_was_open_once(
    backbone: Backbone, copy: PartitionedCopy, tmp_path: Path
) -> None:
    """Open when it stopped: a change the copy missed (its acknowledgement overdue, the listing
    stale) and a row deleted by hand, their repairs in flight. Applied while no reconciler ran; the
    restart reads every topic from its snapshot on, and closes each once, as the reconciler that
    never stopped would have (the missed change acknowledged late, both listings repaired)."""
    path = tmp_path / "kept.sqlite3"
    backbone.record(backbone.book.issue("L-9", measures=("flight_ban",)))  # civil aviation's copy misses it
    first = started(backbone.runner(probes={CA: copy}, snapshot=path), LATE)
    del copy.rows["L-4"]
    first.step(LATE)
    assert sorted(backbone.findings()) == [("missing_ack", CA, "L-9"), ("stale_copy", CA, "L-4"),
                                           ("stale_copy", CA, "L-9")]  # fmt: skip
    stopped_at = dict(first._read_to)
    first.engine.snapshot.close()  # the process stops

    for listing_id in ("L-4", "L-9"):
        apply_the_repair(backbone, copy, listing_id)
    for agency, (change, partition, offset) in backbone.record(backbone.book.issue("L-10")).items():
        if agency == CA:
            copy.take(change, partition, offset)
        backbone.ack(change, partition, offset)
    again = backbone.runner(probes={CA: copy}, snapshot=path, log=second_process(backbone))
    again.start()
    read_from = {tp: at for tp, at in again.reader.positions.items() if at}  # type: ignore[attr-defined]
    assert read_from == {tp: at for tp, at in stopped_at.items() if at}  # every topic from its snapshot on
    topics = backbone.topics
    assert {t for t, _ in read_from} >= {
        topics.findings,
        topics.views(CA),
        topics.copies_applied(CA),
        topics.ledger,
    }
    for _ in range(3):
        again.step(LATE)
    assert sorted(backbone.findings()) == [
        ("acknowledged_late", CA, "L-9"), ("missing_ack", CA, "L-9"), ("repaired", CA, "L-4"),
        ("repaired", CA, "L-9"), ("stale_copy", CA, "L-4"), ("stale_copy", CA, "L-9"),
    ]  # fmt: skip
    assert len(again.engine.book) == 0 and len(again.engine.repairs) == 0 and again.engine.acks.pending() == 0
    assert len(again.engine.expected) == 8  # L-0..L-5, L-9, and L-10 from the tail
    assert [len(repairs_of(backbone, lid)) for lid in ("L-4", "L-9")] == [1, 1]


def test_a_batch_cut_short_by_a_crash_is_read_again_and_counts_once(
    backbone: Backbone, copy: PartitionedCopy, tmp_path: Path
) -> None:
    """Nothing lost, nothing applied twice: a change and its acknowledgement handled but never
    committed are gone with the process, and read again from the snapshot's positions."""
    path = tmp_path / "kept.sqlite3"
    first = started(backbone.runner(snapshot=path), T0)
    committed = first.engine.snapshot.positions()
    landed = backbone.record(backbone.book.issue("L-7", measures=("flight_ban",)))
    backbone.ack(*landed[CA])
    for record in first.reader.read(1000, 0):
        first.handle(record)  # the batch is handled; the process dies before its commit
    assert first.engine.acks.acked(CA, "L-7") == 1
    first.engine.snapshot.close()
    again = backbone.runner(snapshot=path, log=second_process(backbone))
    again.start()
    assert again.engine.snapshot.positions() == committed and again.engine.acks.acked(CA, "L-7") == 0
    for _ in range(3):
        again.step(LATE)
    assert again.engine.acks.acked(CA, "L-7") == 1 and again.engine.acks.pending() == 0
    assert backbone.findings() == []  # neither overdue nor late: the ack counted once, in time


def test_the_operator_page_of_a_restarted_reconciler_shows_what_was_open_before_its_snapshot(
    backbone: Backbone, copy: PartitionedCopy, tmp_path: Path
) -> None:
    path = tmp_path / "kept.sqlite3"
    first = started(backbone.runner(probes={CA: copy}, snapshot=path), LATE)
    del copy.rows["L-4"]
    first.step(LATE)  # found, its repair sent, not applied
    first.step(LATE)  # its finding read back, committed
    first.engine.snapshot.close()
    again = backbone.runner(snapshot=path, log=second_process(backbone))
    again.board = Board()
    again.start()
    [case] = again.board.snapshot().open
    assert (case.detection.kind, case.detection.envelope.listing_id) == ("stale_copy", "L-4")
