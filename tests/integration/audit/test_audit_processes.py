"""`--processes N` on a real broker: the partitions shared out over processes give the answer one gives.

The log holds faults of every kind `verify` names and states of every kind `state-at`
shows (applied, held behind a missing version, refused by the ledger, on a wrong
partition), on listings whose partitions fall to different processes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from confluent_kafka import Producer

from services.core.kafka import producer_config, read_all
from services.core.partitioner import partition_of
from services.core.sealing import seal
from tests.integration.audit.world import World

T1 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
LISTINGS = [f"L-{n}" for n in range(12)]


def shares_of(listings: list[str]) -> set[int]:
    """Which of two processes (partitions 0 and 2, or 1, of 3) reads each listing's events."""
    return {partition_of(lid.encode(), 3) % 2 for lid in listings}


def troubled_history(world: World) -> dict[str, str]:
    """Twelve listings over every partition, with a forged, a missing, a garbled and a misplaced event."""
    book, faults = world.book, {}
    book.now = T1
    for lid in LISTINGS:
        world.publish(book.issue(lid, agency="court", measures=("flight_ban", "rail_ban")))
    book.now = T1 + timedelta(days=1)
    for lid in LISTINGS[:6]:
        world.publish(book.correct(lid, agency="court", severity="severe"))
    book.correct(LISTINGS[6], agency="court", severity="severe")  # sealed, never published: a gap
    world.publish(book.revoke(LISTINGS[6], agency="court"))
    faults[LISTINGS[6]] = "version_gap"
    genuine = book.revoke(LISTINGS[7], agency="court")
    world.publish(seal(genuine, genuine.envelope.prev_hash, book.keystore.private("tax-bureau")))
    faults[LISTINGS[7]] = "bad_signature"
    world.publish(book.revoke(LISTINGS[8], agency="court"))
    world.publish_bytes("court", LISTINGS[9], b"\xc3\x01 not an event at all")
    faults[LISTINGS[9]] = "undecodable"
    faults[LISTINGS[10]] = misplace(world, LISTINGS[10])
    assert shares_of(list(faults)) == {0, 1}, "the faults must fall to both processes"
    return faults


def misplace(world: World, listing: str) -> str:
    """The listing's issue, its very bytes, written again on the next partition: a replay there."""
    topic = world.topics.listings("court")
    (issued,) = [m for m in read_all(world.connection, [topic]) if m.key() == listing.encode()]
    raw = Producer(producer_config(world.connection))
    raw.produce(topic, issued.value(), issued.key(), partition=(partition_of(listing.encode(), 3) + 1) % 3)
    assert raw.flush(30) == 0
    return "wrong_partition"


def test_verify_in_two_processes_finds_every_fault_one_finds(world: World) -> None:
    faults = troubled_history(world)
    one = world.run("verify", "--json")
    two = world.run("verify", "--json", "--processes", "2")
    assert one.exit_code == two.exit_code == 1, one.output + two.output
    assert json.loads(two.stdout) == json.loads(one.stdout)
    found = json.loads(two.stdout)["broken"]
    assert {(row["code"], row["listing"] or LISTINGS[9]) for row in found} == {
        (code, lid) for lid, code in faults.items()
    }
    assert "verified 23 events of 12 listings" in world.run("verify", "--processes", "3").stdout


def test_state_at_in_several_processes_is_the_state_one_replays(world: World) -> None:
    troubled_history(world)
    world.ack("railway", LISTINGS[0], 1, T1 + timedelta(seconds=1))
    at = (T1 + timedelta(days=2)).isoformat()
    args = ("state-at", at, "--ledger", "--compare", "--agency", "railway")
    one = world.run_json(*args)
    for processes in ("2", "3"):
        assert world.run_json(*args, "--processes", processes) == one
    ledger = {row["listing"]: (row["status"], row["version"]) for row in one["ledger"]}
    assert ledger[LISTINGS[0]] == ("active", 2) and ledger[LISTINGS[8]] == ("revoked", 2)
    assert ledger[LISTINGS[6]] == ("active", 1), "its revocation waits for the missing version 2"
    notes = " ".join(one["notes"])
    assert "1 events skipped: on a partition other than their listing's own" in notes
    assert "1 events wait for a version missing at T" in notes and "undecodable" in notes
