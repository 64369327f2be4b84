"""A listing's history is one sequence, on a real broker: replays, wrong partitions and gaps.

The attack of issue 10: the issue event of a listing later revoked, read back from its topic
and written again into another partition (or the same one), must not bring the listing back.
Both go to `rejected` with their reason; the `ledger` topic and every view keep the revocation.
A message held for a predecessor that never comes is refused after the configured limit.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Message, Producer

from services.core.connection import KafkaConnection
from services.core.events import ListingState, Rejected, ViewChanged
from services.core.kafka import decode_message, producer_config, read_all
from services.core.partitioner import partition_of
from tests.integration.ledger.harness import PARTITIONS, Backbone, wait_for
from tests.support.backbones import health_report, held_behind_a_gap, running_backbone

TIMEOUT = 90.0
HOLD_LIMIT_S = 4


@pytest.fixture(scope="module")
def backbone(kafka_admin: KafkaConnection, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backbone]:
    ledger = {"store": "rocksdb://", "ACCORD_LEDGER_HOLD_LIMIT_S": str(HOLD_LIMIT_S)}
    with running_backbone(kafka_admin, tmp_path_factory.mktemp("integrity"), ledger=ledger) as running:
        yield running


def raw_message(backbone: Backbone, topic: str, listing_id: str, version: int) -> Message:
    """The bytes of one event exactly as the log holds them."""
    for msg in read_all(backbone.connection, [topic]):
        if msg.key() == listing_id.encode() and decode_message(msg).event.envelope.version == version:
            return msg
    raise AssertionError(f"{listing_id} v{version} not in {topic}")


def ledger_records(backbone: Backbone, listing_id: str) -> list[ListingState]:
    found = [e for e in backbone.read(backbone.topics.ledger) if e.envelope.listing_id == listing_id]
    assert all(isinstance(e, ListingState) for e in found)
    return found  # type: ignore[return-value]


def refusals(backbone: Backbone, listing_id: str) -> list[Rejected]:
    return [
        r
        for r in backbone.read(backbone.topics.rejected)
        if isinstance(r, Rejected) and r.envelope.listing_id == listing_id
    ]


def wait_for_refusal(backbone: Backbone, listing_id: str, code: str) -> Rejected:
    def found() -> Rejected | None:
        backbone.assert_alive()
        return next((r for r in refusals(backbone, listing_id) if r.reason_code == code), None)

    return wait_for(f"a {code} refusal of {listing_id}", found, TIMEOUT, every=0.5)


def wait_for_version(backbone: Backbone, listing_id: str, version: int) -> ListingState:
    def reached() -> ListingState | None:
        backbone.assert_alive()
        records = ledger_records(backbone, listing_id)
        return records[-1] if records and records[-1].envelope.version >= version else None

    return wait_for(f"{listing_id} v{version} in the ledger topic", reached, TIMEOUT, every=0.5)


def test_a_revoked_listing_replayed_into_another_partition_or_its_own_stays_revoked(
    backbone: Backbone,
) -> None:
    book = backbone.book()
    topic = backbone.topics.listings("court")
    backbone.publish([book.issue("R-1"), book.revoke("R-1")])
    assert wait_for_version(backbone, "R-1", 2).status == "revoked"
    issued = raw_message(backbone, topic, "R-1", 1)
    own = partition_of(b"R-1", PARTITIONS)
    assert issued.partition() == own  # confluent-kafka's murmur2_random agrees with ours
    other = (own + 1) % PARTITIONS

    raw = Producer(producer_config(backbone.connection))
    raw.produce(topic, key=issued.key(), value=issued.value(), partition=other)
    raw.produce(topic, key=issued.key(), value=issued.value(), partition=own)
    assert raw.flush(30) == 0

    misplaced = wait_for_refusal(backbone, "R-1", "wrong_partition")
    replay = wait_for_refusal(backbone, "R-1", "replay")
    assert (misplaced.partition, misplaced.payload) == (other, issued.value())
    assert replay.partition == own and replay.offset > (issued.offset() or 0)
    assert f"applied from {topic}[{own}]@{issued.offset()}" in replay.reason
    records = ledger_records(backbone, "R-1")
    assert [(r.envelope.version, r.status) for r in records] == [(1, "active"), (2, "revoked")]
    for agency in ("civil-aviation", "railway"):
        changes = [
            c
            for c in backbone.read(backbone.topics.views(agency))
            if isinstance(c, ViewChanged) and c.envelope.listing_id == "R-1"
        ]
        assert [c.op for c in changes] == ["upsert", "delete"]


def test_a_gap_that_never_fills_is_visible_while_held_then_refused(backbone: Backbone) -> None:
    lost, report = held_behind_a_gap(backbone, "G-1", TIMEOUT)
    assert report["held"] == {"G-1": 1} and ledger_records(backbone, "G-1")[-1].envelope.version == 1

    refusal = wait_for_refusal(backbone, "G-1", "gap_never_filled")
    assert refusal.envelope.version == 3 and f"limit {HOLD_LIMIT_S} s" in refusal.reason
    wait_for("G-1 no longer held", lambda: (r := health_report(backbone)) and "G-1" not in r["held"], TIMEOUT)
    assert health_report(backbone)["gaps_given_up"] >= 1

    backbone.publish([lost])  # the gap fills too late: v2 applies, the refused v3 stays refused
    assert wait_for_version(backbone, "G-1", 2).status == "active"
    assert [r.reason_code for r in refusals(backbone, "G-1")] == ["gap_never_filled"]
    assert ledger_records(backbone, "G-1")[-1].envelope.version == 2
