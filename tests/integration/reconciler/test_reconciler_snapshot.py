"""The reconciler's snapshot on the real broker: a restart reads every topic only from where its
snapshot stopped, and a snapshot that does not describe the log (of another cluster, or stopping
past what a partition holds: a recreated topic) is emptied and the whole log read again."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.core.connection import KafkaConnection
from services.reconciler.runner import Runner
from tests.integration.reconciler.live import CA, Live, live, wait_for


@pytest.fixture
def world(kafka_admin: KafkaConnection, namespace: str, url: str, tmp_path: Path) -> Iterator[Live]:
    yield from live(kafka_admin, namespace, url, tmp_path)


def settled(runner: Runner, listings: int) -> Callable[[], bool]:
    """Read to the log's end: every listing expected, every change acknowledged."""
    engine = runner.engine
    return lambda: runner.replayed and len(engine.expected) == listings and engine.acks.pending() == 0


def run_once(
    world: Live, folder: Path, listings: int, name: str
) -> tuple[Runner, dict[tuple[str, int], int]]:
    """A reconciler with its snapshot under `folder`, run until settled, then stopped."""
    halt = threading.Event()
    runner = world.start_reconciler(name, stop=halt, snapshots=folder)
    wait_for(f"{name} to settle", settled(runner, listings))
    read_to = dict(runner._read_to)
    halt.set()
    wait_for(f"{name} to stop", lambda: any("p50 s" in line for line in world.logs[name]))
    return runner, read_to


def test_a_restart_reads_every_topic_from_its_snapshot_on(world: Live, tmp_path: Path) -> None:
    world.start_sink(digest_interval_s=0.5)
    for i in range(4):
        world.record(world.book.issue(f"L-{i}", measures=("flight_ban",)))
    first, stopped_at = run_once(world, tmp_path / "snapshots", 4, "first")
    topics = world.topics
    wanted = {topics.ledger, topics.views(CA), topics.copies_applied(CA), topics.copies_digests(CA)}
    assert wanted <= {topic for (topic, _), at in stopped_at.items() if at > 0}
    world.record(world.book.issue("L-9", measures=("flight_ban",)))
    second = world.start_reconciler("second", snapshots=tmp_path / "snapshots")
    wait_for("the second to settle", settled(second, 5))
    assert second.engine.snapshot.path == first.engine.snapshot.path  # the first's file, released
    assert second.read < first.read  # the tail: the new listing, its change, ack and digests
    assert second.engine.acks.acked(CA, "L-0") == 1 and second.engine.acks.acked(CA, "L-9") == 1


def by_hand(path: str, edit: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute(edit)


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE meta SET value = 'another-cluster' WHERE name = 'cluster'",
        "UPDATE positions SET next_offset = next_offset + 1000000 WHERE topic LIKE '%copies.applied%'",
    ],
    ids=["another-cluster", "past-the-end"],
)
def test_a_snapshot_not_of_this_log_is_emptied_and_the_log_read_again(
    world: Live, tmp_path: Path, edit: str
) -> None:
    world.start_sink(digest_interval_s=0.5)
    for i in range(3):
        world.record(world.book.issue(f"L-{i}", measures=("flight_ban",)))
    first, _ = run_once(world, tmp_path / "snapshots", 3, "first")
    by_hand(first.engine.snapshot.path, edit)
    by_hand(first.engine.snapshot.path, "DELETE FROM acks")  # forged: what it knew is no longer there
    again = world.start_reconciler("again", snapshots=tmp_path / "snapshots")
    wait_for("the log read again", settled(again, 3))
    assert again.read >= first.read  # from the start of every topic
    assert [again.engine.acks.acked(CA, f"L-{i}") for i in range(3)] == [1, 1, 1]


def test_two_reconcilers_on_one_host_each_keep_a_snapshot_of_their_own(world: Live, tmp_path: Path) -> None:
    world.start_sink(digest_interval_s=0.5)
    world.record(world.book.issue("L-0", measures=("flight_ban",)))
    one = world.start_reconciler("one", lease=True, snapshots=tmp_path / "snapshots")
    two = world.start_reconciler("two", lease=True, snapshots=tmp_path / "snapshots")
    wait_for("both to settle", lambda: settled(one, 1)() and settled(two, 1)())
    assert one.engine.snapshot.path != two.engine.snapshot.path
    assert {Path(one.engine.snapshot.path).parent, Path(two.engine.snapshot.path).parent} == {
        tmp_path / "snapshots"
    }
