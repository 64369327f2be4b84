"""No repair outlives a newer ledger decision, on real SQLite and PostgreSQL copies and a real broker.

A repair planned at v1 lands in the view topic after the ledger's revocation (v2). Repairs are
keyed apart from the ledger's changes, so compaction keeps the revocation; a fresh sink and
`audit rebuild` reading the compacted topic both refuse the older repair. A change delivered
twice is applied, and acknowledged, once.
"""

from __future__ import annotations

import time

import pytest

from services.audit.rebuild import write_copy
from services.core.connection import KafkaConnection
from services.core.copystore import CopyStore
from services.core.events import CopyApplied, ViewChanged
from services.core.kafka import EventProducer, create_topics, decode_message, partition_for, read_all
from services.core.topics import Topics, TopicSpec
from services.reconciler.repair import repair_key
from tests.integration.copies.support import PARTITIONS, caught_up, make_topics, open_sink
from tests.unit.copies.changes import AGENCY, by_reconciler, delete, row, upsert
from tests.unit.copies.test_copystore_behaviour import execute

# Roll a segment every 100 ms and clean as soon as anything is dirty: compaction within seconds.
EAGER = {"cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.001",
         "min.compaction.lag.ms": "0", "delete.retention.ms": "100"}  # fmt: skip
COMPACTION_WAIT_S = 90.0


@pytest.fixture
def topics(kafka_admin: KafkaConnection, namespace: str) -> Topics:
    topics = Topics(namespace)
    create_topics(kafka_admin, [TopicSpec(topics.views(AGENCY), "listing_id", ("ViewChanged",), EAGER)],
                  PARTITIONS, 1)  # fmt: skip
    return make_topics(kafka_admin, namespace)


def overtaken_repair(producer: EventProducer, topic: str) -> ViewChanged:
    """v1 issued, the reconciler plans a repair at v1, the ledger revokes (v2), the repair lands last."""
    repair = by_reconciler(upsert(row("L-1", 1, case_ref="repaired")))
    producer.send(topic, "L-1", upsert(row("L-1", 1)))
    producer.send(topic, "L-1", delete("L-1", 2))
    producer.send(topic, repair_key("L-1"), repair, partition=partition_for("L-1", PARTITIONS))
    producer.flush()
    return repair


def compacted(connection: KafkaConnection, topic: str) -> list[ViewChanged]:
    """Wait until the cleaner has dropped the superseded v1; the changes of L-1 that remain."""
    producer, deadline = EventProducer(connection), time.monotonic() + COMPACTION_WAIT_S
    while time.monotonic() < deadline:
        filler = upsert(row("L-filler", 1))  # an append to L-1's partition rolls the segment L-1 is in
        producer.send(topic, "L-filler", filler, partition=partition_for("L-1", PARTITIONS))
        producer.flush()
        left = [e for m in read_all(connection, [topic])
                if isinstance(e := decode_message(m).event, ViewChanged)]  # fmt: skip
        mine = [c for c in left if c.envelope.listing_id == "L-1"]
        if len(mine) < 3:
            return mine
        time.sleep(1.0)
    raise AssertionError(f"{topic} was not compacted within {COMPACTION_WAIT_S} s")


def test_a_repair_overtaken_by_a_revocation_survives_compaction_refused_by_a_fresh_sink_and_rebuild(
    store: CopyStore, url: str, topics: Topics, kafka_admin: KafkaConnection, namespace: str
) -> None:
    topic = topics.views(AGENCY)
    overtaken_repair(EventProducer(kafka_admin), topic)
    left = compacted(kafka_admin, topic)
    assert [(c.envelope.agency, c.op, c.envelope.version) for c in left] == [
        ("ledger", "delete", 2), ("reconciler", "upsert", 1),
    ]  # fmt: skip

    sink = open_sink(store, kafka_admin, namespace)  # a fresh copy, reading the compacted topic
    caught_up(sink, kafka_admin)
    sink.close()
    assert store.row("L-1") is None and store.delivered_version("L-1") == 2
    acks = [e for m in read_all(kafka_admin, [topics.copies_applied(AGENCY)])
            if isinstance(e := decode_message(m).event, CopyApplied)
            and e.envelope.listing_id == "L-1"]  # fmt: skip
    assert [(a.op, a.envelope.version) for a in acks] == [("delete", 2), ("delete", 2)]  # what it holds

    for table in ("copy_rows", "copy_buckets", "copy_versions", "copy_positions", "copy_outbox"):
        execute(url, f"DELETE FROM {table}")  # the operator empties the copy to rebuild it from the log
    result, built = write_copy(kafka_admin, topic, AGENCY, url)
    assert "L-1" not in {r.listing_id for r in built} and result.overtaken == 1


def test_a_change_delivered_twice_is_applied_and_acknowledged_once(
    store: CopyStore, topics: Topics, kafka_admin: KafkaConnection, namespace: str
) -> None:
    producer, topic = EventProducer(kafka_admin), topics.views(AGENCY)
    first = upsert(row("L-1", 1))
    for change in (first, first, upsert(row("L-1", 2, case_ref="corrected")), first):
        producer.send(topic, "L-1", change)  # the ledger re-emits v1 (a restart), also after v2
    producer.flush()
    sink = open_sink(store, kafka_admin, namespace)
    caught_up(sink, kafka_admin)
    sink.close()
    assert store.row("L-1") == row("L-1", 2, case_ref="corrected")
    acks = [e for m in read_all(kafka_admin, [topics.copies_applied(AGENCY)])
            if isinstance(e := decode_message(m).event, CopyApplied)]  # fmt: skip
    assert [(a.envelope.version, a.op) for a in acks] == [(1, "upsert"), (2, "upsert"), (2, "upsert")]
    assert acks[2].row_hash == row("L-1", 2, case_ref="corrected").row_hash()  # the old v1: what it holds
