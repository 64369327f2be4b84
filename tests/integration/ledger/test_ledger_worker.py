"""The ledger worker as it runs for real: a subprocess (`accord ledger run`, RocksDB tables)
against the real broker, fed sealed events on the listing topics.

One worker serves the module; each test uses listings of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer, TopicPartition

from services.core.connection import KafkaConnection
from services.core.events import ListingExpired, ListingState, Rejected, ViewChanged
from services.core.kafka import end_offsets, producer_config, read_all
from services.core.partitioner import partition_of
from services.core.sealing import seal
from services.core.topics import BACKBONE
from services.core.views import ViewRow
from services.ledger.expiry import expiry_of
from tests.integration.ledger.harness import PARTITIONS, Backbone, expected_views, fold, wait_for
from tests.integration.ledger.test_ledger_faults import committed
from tests.support.backbones import held_behind_a_gap, running_backbone

TIMEOUT = 90.0


@pytest.fixture(scope="module")
def backbone(kafka_admin: KafkaConnection, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backbone]:
    with running_backbone(
        kafka_admin, tmp_path_factory.mktemp("ledger"), ledger={"store": "rocksdb://"}
    ) as b:
        yield b


def ledger_states(backbone: Backbone) -> dict[str, ListingState]:
    states = {}
    for event in backbone.read(backbone.topics.ledger):
        assert isinstance(event, ListingState)
        states[event.envelope.listing_id] = event
    return states


def wait_for_state(backbone: Backbone, listing_id: str, version: int) -> ListingState:
    def reached() -> ListingState | None:
        backbone.assert_alive()
        state = ledger_states(backbone).get(listing_id)
        return state if state is not None and state.envelope.version >= version else None

    return wait_for(f"{listing_id} v{version} in the ledger topic", reached, TIMEOUT, every=0.5)


def latest_changes(backbone: Backbone, agency: str) -> dict[str, ViewChanged]:
    latest = {}
    for event in backbone.read(backbone.topics.views(agency)):
        assert isinstance(event, ViewChanged)
        latest[event.envelope.listing_id] = event
    return latest


def test_a_listing_life_reaches_every_entitled_view_and_the_ledger_topic(backbone: Backbone) -> None:
    book = backbone.book()
    events = [
        book.issue("A-1"),
        book.correct("A-1", measures=["rail_ban"]),
        book.exempt("A-1", "rail_ban"),
        book.issue("A-2", measures=("high_consumption",)),
        book.revoke("A-2"),
    ]
    backbone.publish(events)
    wait_for_state(backbone, "A-1", 3)
    wait_for_state(backbone, "A-2", 2)

    states = fold(events)
    assert {k: v for k, v in ledger_states(backbone).items() if k in states} == states
    for agency in ("civil-aviation", "railway", "court"):
        want: dict[str, ViewRow] = expected_views(states, agency, backbone.policy)
        have = latest_changes(backbone, agency)
        assert {k: ViewRow.from_change(c) for k, c in have.items() if c.op == "upsert"} == want
        assert {k for k, c in have.items() if c.op == "delete"} == have.keys() - want.keys()
    assert latest_changes(backbone, "civil-aviation")["A-1"].op == "delete"  # its flight ban was dropped
    assert latest_changes(backbone, "court")["A-2"].op == "delete"


def test_bad_input_goes_to_rejected_and_the_good_events_around_it_apply(backbone: Backbone) -> None:
    book = backbone.book()
    garbage = b"\xc3\x01 not an event"
    raw = Producer(producer_config(backbone.connection))
    backbone.publish([book.issue("B-1")])
    raw.produce(backbone.topics.listings("court"), key=b"B-1", value=garbage)
    assert raw.flush(30) == 0
    forged = seal(book.issue("B-2"), "", backbone.keystore.private("tax-bureau"))
    backbone.publish([forged, book.correct("B-1", legal_basis="amended basis")])

    assert wait_for_state(backbone, "B-1", 2).legal_basis == "amended basis"
    refusals = {r.reason_code: r for r in backbone.read(backbone.topics.rejected) if isinstance(r, Rejected)}
    assert refusals["undecodable"].payload == garbage
    assert refusals["bad_signature"].envelope.listing_id == "B-2"
    assert refusals["bad_signature"].source_topic == backbone.topics.listings("court")
    assert "B-2" not in ledger_states(backbone)


def test_a_version_gap_is_held_until_the_missing_version_arrives(backbone: Backbone) -> None:
    lost, _ = held_behind_a_gap(backbone, "C-1", TIMEOUT)
    assert ledger_states(backbone)["C-1"].envelope.version == 1
    backbone.publish([lost])
    assert wait_for_state(backbone, "C-1", 3).status == "revoked"


def test_a_listing_expires_on_time_through_the_backbone_topic(backbone: Backbone) -> None:
    book = backbone.book()
    expires_at = datetime.now(UTC) + timedelta(seconds=3)
    backbone.publish([book.issue("D-1", expires_at=expires_at), book.issue("D-2")])
    state = wait_for_state(backbone, "D-1", 2)
    assert state.status == "expired" and datetime.now(UTC) >= expires_at
    (expiry,) = [
        e for e in backbone.read(backbone.topics.listings(BACKBONE)) if e.envelope.listing_id == "D-1"
    ]
    assert isinstance(expiry, ListingExpired)
    assert (expiry.envelope.agency, expiry.expired_at) == (BACKBONE, expires_at)
    for agency in ("civil-aviation", "railway"):
        changes = latest_changes(backbone, agency)
        assert changes["D-1"].op == "delete" and changes["D-1"].status == "expired"
        assert changes["D-2"].op == "upsert"


def test_progress_is_reported_for_health_checks(backbone: Backbone) -> None:
    report = json.loads((backbone.folder / "ledger" / "health.json").read_text())
    assert report["handled"] >= report["applied"] > 0
    assert datetime.now(UTC) - datetime.fromisoformat(report["written_at"]) < timedelta(seconds=10)


def test_an_expiry_asked_twice_is_applied_once_and_refused_never(backbone: Backbone) -> None:
    """What a worker restarted between publishing an expiry and applying it does: ask again, under
    the same id, sealed anew. The second changes nothing and raises no `replay` refusal."""
    book = backbone.book()
    backbone.publish([book.issue("E-1")])
    state, key = wait_for_state(backbone, "E-1", 1), backbone.keystore.private(BACKBONE)
    now = datetime.now(UTC)
    first, again = expiry_of(state, now, key), expiry_of(state, now + timedelta(seconds=1), key)
    backbone.publish([first, again])
    topic = backbone.topics.listings(BACKBONE)
    partition = partition_of(b"E-1", PARTITIONS)
    end = end_offsets(backbone.connection, [topic])[TopicPartition(topic, partition)]
    wait_for("both expiries handled", lambda: committed(backbone, topic, partition) >= end, TIMEOUT)
    assert wait_for_state(backbone, "E-1", 2).status == "expired"
    records = read_all(backbone.connection, [backbone.topics.ledger])
    decided = {m.value() for m in records if m.key() == b"E-1"}
    assert len(decided) == 2  # v1 and v2, each once (a re-sent record would repeat its bytes)
    refused = [r for r in backbone.read(backbone.topics.rejected) if r.envelope.listing_id == "E-1"]
    assert refused == []
