"""`accord audit verify` on a real broker: tampering anywhere in the listing topics is found and located."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from confluent_kafka import Message, Producer

from services.core.events import ListingIssued
from services.core.kafka import Delivered, producer_config, read_all
from services.core.partitioner import partition_of
from services.core.sealing import seal
from services.core.serde import encode
from tests.integration.audit.world import World

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def honest_history(world: World) -> None:
    """Three listings, one corrected and one revoked by a court on another topic."""
    book = world.book
    book.now = T0
    world.publish(book.issue("L-a", agency="luoshan-police"))
    world.publish(book.issue("L-b", agency="court"))
    world.publish(book.issue("L-c", agency="tax-bureau", measures=("flight_ban",)))
    book.now = T0 + timedelta(days=1)
    world.publish(book.correct("L-b", agency="court", measures=["rail_ban"]))
    world.publish(book.revoke("L-a", agency="court", reason="court_order"))


def broken(world: World) -> tuple[int, list[dict[str, object]], str]:
    result = world.run("verify", "--json")
    return result.exit_code, json.loads(result.stdout)["broken"], result.output


def where(row: dict[str, object]) -> tuple[object, object, object]:
    return row["topic"], row["partition"], row["offset"]


def at(delivered: Delivered) -> tuple[str, int, int]:
    return delivered.topic, delivered.partition, delivered.offset


def test_an_honest_log_verifies(world: World) -> None:
    honest_history(world)
    result = world.run("verify")
    assert result.exit_code == 0, result.output
    assert (
        "verified 5 events of 3 listings in 6 topics: every signature valid, every chain intact"
        in result.stdout
    )


def test_an_event_altered_on_the_topic_is_caught_where_it_sits(world: World) -> None:
    honest_history(world)
    book = world.book
    original = book.issue("L-d", agency="court")
    assert isinstance(original, ListingIssued)
    altered = original.model_copy(update={"measures": ["high_consumption"]})  # not re-sealed
    changed = world.publish(altered)
    code, rows, _ = broken(world)
    assert code == 1
    assert [(where(r), r["code"], r["listing"]) for r in rows] == [(at(changed), "bad_hash", "L-d")]
    text = world.run("verify").stdout
    assert re.search(rf"{re.escape(changed.topic)}\s+{changed.partition}\s+{changed.offset}\s+L-d", text)


def test_a_flipped_byte_in_a_string_breaks_the_hash(world: World) -> None:
    honest_history(world)
    event = world.book.issue("L-e", agency="labour-bureau", measures=("wage_arrears_blacklist",))
    data = encode(event)
    assert data.count(b"Y* H**") == 1
    flipped = world.publish_bytes("labour-bureau", "L-e", data.replace(b"Y* H**", b"X* H**"))
    code, rows, _ = broken(world)
    assert code == 1
    assert [(where(r), r["code"]) for r in rows] == [(at(flipped), "bad_hash")]


def test_a_removed_a_forged_and_a_garbled_event_are_each_reported(world: World) -> None:
    honest_history(world)
    book = world.book
    world.publish(book.issue("L-f", agency="market-regulator", measures=("market_access_restriction",)))
    book.correct("L-f", agency="market-regulator", severity="severe")  # sealed, never published: a gap
    gap = world.publish(book.revoke("L-f", agency="market-regulator"))
    genuine = book.issue("L-g", agency="court")
    forged = world.publish(seal(genuine, "", book.keystore.private("tax-bureau")))
    garbled = world.publish_bytes("court", "L-h", b"\xc3\x01 not an event at all")
    hijacked = world.publish_bytes("court", "L-i", encode(book.issue("L-i", agency="tax-bureau")))
    code, rows, output = broken(world)
    assert code == 1
    found = {where(r): r["code"] for r in rows}
    assert found == {
        at(gap): "version_gap",
        at(forged): "bad_signature",
        at(garbled): "undecodable",
        at(hijacked): "wrong_topic",
    }
    assert "4 BROKEN" in output


def test_a_fork_and_a_relinked_event_break_the_chain(world: World) -> None:
    honest_history(world)
    book = world.book
    book.now = T0 + timedelta(days=2)
    fork_base = book.heads["L-c"]
    world.publish(book.correct("L-c", agency="tax-bureau", severity="severe"))
    book.heads["L-c"] = fork_base
    second = world.publish(book.correct("L-c", agency="tax-bureau", severity="minor"))
    book.heads["L-b"] = (book.heads["L-b"][0], "0" * 64)
    relinked = world.publish(book.revoke("L-b", agency="court"))
    code, rows, _ = broken(world)
    assert code == 1
    assert {where(r): r["code"] for r in rows} == {at(second): "fork", at(relinked): "broken_link"}


def test_missing_topics_are_a_clear_error(world: World) -> None:
    result = world.run("verify")
    assert result.exit_code == 0
    other = World(
        world.connection,
        type(world.topics)("tnothere."),
        world.policy,
        world.book,
        world.keystore_dir,
        world.producer,
    )
    missing = other.run("verify")
    assert missing.exit_code == 1 and "missing topics" in missing.output


def test_replays_and_events_on_a_wrong_partition_are_reported_never_as_harmless(world: World) -> None:
    """The replay of issue 10: a revoked listing's issue, its very bytes, written again twice."""
    honest_history(world)
    topic = world.topics.listings("luoshan-police")
    (issued,) = [m for m in read_all(world.connection, [topic]) if m.key() == b"L-a"]
    own = partition_of(b"L-a", 3)
    assert issued.partition() == own
    raw = Producer(producer_config(world.connection))
    landed: list[Message] = []
    for partition in ((own + 1) % 3, own):
        raw.produce(
            topic, issued.value(), b"L-a", partition=partition, on_delivery=lambda e, m: landed.append(m)
        )
    assert raw.flush(30) == 0
    code, rows, output = broken(world)
    assert code == 1
    expected = {(m.topic(), m.partition(), m.offset()): m.partition() == own for m in landed}
    assert {where(r): r["code"] for r in rows} == {
        at: "replay" if in_own else "wrong_partition" for at, in_own in expected.items()
    }
    assert "harmless" not in output and "2 of them replays or events on a wrong partition" in output
    assert all("the ledger refuses it" in str(r["reason"]) for r in rows)
