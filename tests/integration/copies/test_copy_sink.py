"""The copy sink against the real broker and real databases (a SQLite file, a PostgreSQL database).

It must apply its view exactly as sent, keep its position in the database (so a new
sink on the same store resumes where the last one stopped), acknowledge every change
once, refuse and record what it may not apply without stopping, and publish a digest
equal to the one its expected view implies.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from services.copies import messages
from services.copies.sink import CLOSE_WAIT_S
from services.core.connection import KafkaConnection
from services.core.copystore import CopyStore, open_store
from services.core.digest import Digest, leaf
from services.core.events import CopyApplied, CopyDigest, Event, Rejected
from services.core.kafka import EventProducer, consumer, decode_message, producer_config, read_all
from services.core.serde import encode
from services.core.topics import Topics, copy_key
from tests.integration.copies.support import (
    caught_up,
    group_offsets,
    make_topics,
    open_sink,
    real_sink,
    send,
    wait_until,
)
from tests.unit.copies.changes import AGENCY, by_reconciler, delete, row, upsert


@pytest.fixture
def topics(kafka_admin: KafkaConnection, namespace: str) -> Topics:
    return make_topics(kafka_admin, namespace)


def read(connection: KafkaConnection, topic: str) -> list[Event]:
    return [decode_message(m).event for m in read_all(connection, [topic])]


def test_the_sink_applies_acknowledges_and_digests_its_view(
    store: CopyStore, topics: Topics, kafka_admin: KafkaConnection, namespace: str
) -> None:
    rows = {
        f"L-{i}": row(f"L-{i}", version=1, subject_ref=f"s-{i % 3}", exempt=i % 4 == 0) for i in range(12)
    }
    changes = [upsert(r) for r in rows.values()]
    changes += [upsert(row("L-1", 2, case_ref="corrected")), delete("L-2", 2), delete("L-3", 2)]
    rows["L-1"] = row("L-1", 2, case_ref="corrected")
    del rows["L-2"], rows["L-3"]
    send(kafka_admin, topics.views(AGENCY), changes)

    sink = open_sink(store, kafka_admin, namespace, digest_interval_s=600)
    caught_up(sink, kafka_admin)
    sink.poll()  # idle and changed since the last digest: a digest goes out
    sink.close()

    assert {r.listing_id: r for r in store.rows()} == rows
    acks = [e for e in read(kafka_admin, topics.copies_applied(AGENCY)) if isinstance(e, CopyApplied)]
    assert len(acks) == len(changes)
    assert {(a.envelope.listing_id, a.envelope.version, a.op) for a in acks} == {
        (c.envelope.listing_id, c.envelope.version, c.op) for c in changes
    }
    keys = {m.key() for m in read_all(kafka_admin, [topics.copies_applied(AGENCY)])}
    assert copy_key(AGENCY, "L-1").encode() in keys
    assert store.unsent_acks() == []
    expected = Digest.of(
        (r.listing_id, leaf(r.listing_id, r.version, r.status, r.row_hash())) for r in rows.values()
    )
    digests = [e for e in read(kafka_admin, topics.copies_digests(AGENCY)) if isinstance(e, CopyDigest)]
    last = digests[-1]
    assert (last.root, last.rows, last.buckets) == (expected.root(), len(rows), expected.hex_buckets())
    assert {int(p): o for p, o in last.positions.items()} == store.positions()


def test_bad_messages_are_recorded_and_skipped_and_the_good_ones_around_them_apply(
    store: CopyStore, topics: Topics, kafka_admin: KafkaConnection, namespace: str
) -> None:
    topic = topics.views(AGENCY)
    leaky = upsert(row("L-leak")).model_copy(update={"fields": {"details.amount_owed": "1000"}})
    raw = Producer(producer_config(kafka_admin))
    send(kafka_admin, topic, [upsert(row("L-ok-1"))])
    raw.produce(topic, key=b"L-ok-1", value=b"garbage")
    raw.produce(topic, key=b"L-leak", value=encode(leaky))
    raw.produce(topic, key=b"L-other", value=encode(upsert(row("L-other"), agency="railway")))
    assert raw.flush(30) == 0
    send(kafka_admin, topic, [upsert(row("L-ok-2"))])

    sink = open_sink(store, kafka_admin, namespace)
    caught_up(sink, kafka_admin)
    sink.close()

    assert [r.listing_id for r in store.rows()] == ["L-ok-1", "L-ok-2"]
    refusals = [e for e in read(kafka_admin, topics.rejected) if isinstance(e, Rejected)]
    assert sorted(r.reason_code for r in refusals) == ["not_entitled", "undecodable", "wrong_agency"]
    assert {r.source_topic for r in refusals} == {topic}
    assert next(r for r in refusals if r.reason_code == "undecodable").payload == b"garbage"


def test_a_new_sink_on_the_same_store_resumes_where_the_last_stopped(
    url: str, topics: Topics, kafka_admin: KafkaConnection, namespace: str
) -> None:
    topic = topics.views(AGENCY)
    send(kafka_admin, topic, [upsert(row(f"L-{i}")) for i in range(6)])
    first = open_store(url, AGENCY)
    sink = open_sink(first, kafka_admin, namespace)
    caught_up(sink, kafka_admin)
    sink.close()
    first.close()

    send(kafka_admin, topic, [upsert(row(f"L-{i}", 2)) for i in range(3)] + [delete("L-5", 2)])
    second = open_store(url, AGENCY)
    try:
        sink = open_sink(second, kafka_admin, namespace)
        caught_up(sink, kafka_admin)
        sink.close()
        assert [(r.listing_id, r.version) for r in second.rows()] == [
            ("L-0", 2), ("L-1", 2), ("L-2", 2), ("L-3", 1), ("L-4", 1)]  # fmt: skip
    finally:
        second.close()
    acks = [e for e in read(kafka_admin, topics.copies_applied(AGENCY)) if isinstance(e, CopyApplied)]
    positions = [(a.partition, a.offset) for a in acks]
    assert len(positions) == len(set(positions)) == 10


def test_acknowledgements_a_crash_left_unsent_go_out_when_the_sink_starts(
    store: CopyStore, topics: Topics, kafka_admin: KafkaConnection, namespace: str
) -> None:
    change = upsert(row("L-1"))
    ack = messages.applied(change, 0, 0, AGENCY, datetime.now(UTC))
    store.apply(change, 0, 0, ack=lambda _: encode(ack))  # written, then the process died before sending
    sink = open_sink(store, kafka_admin, namespace)
    sink.close()
    assert store.unsent_acks() == []
    assert [e for e in read(kafka_admin, topics.copies_applied(AGENCY))] == [ack]


def test_a_repair_the_ledger_overtook_is_passed_over_and_acknowledged_with_what_the_copy_holds(
    store: CopyStore, topics: Topics, kafka_admin: KafkaConnection, namespace: str
) -> None:
    """The reconciler planned a repair at v1 (or v2); the ledger's v2 (or revocation, v3) landed in
    the partition first. Applying the repair would undo the ledger's later word; it must not."""
    changes = [
        upsert(row("L-1")),
        upsert(row("L-1", 2, case_ref="corrected")),
        by_reconciler(upsert(row("L-1"))),
    ]
    changes += [upsert(row("L-2")), delete("L-2", 3), by_reconciler(upsert(row("L-2", 2)))]
    changes += [upsert(row("L-3")), by_reconciler(upsert(row("L-3", case_ref="fixed")))]  # needed: applies
    send(kafka_admin, topics.views(AGENCY), changes)
    sink = open_sink(store, kafka_admin, namespace)
    caught_up(sink, kafka_admin)
    sink.close()

    assert store.row("L-1") == row("L-1", 2, case_ref="corrected") and store.row("L-2") is None
    assert store.row("L-3") == row("L-3", case_ref="fixed")
    acks = [e for e in read(kafka_admin, topics.copies_applied(AGENCY)) if isinstance(e, CopyApplied)]
    last = {a.envelope.listing_id: a for a in sorted(acks, key=lambda a: a.offset)}
    assert (last["L-1"].envelope.version, last["L-1"].op) == (2, "upsert")
    assert last["L-1"].row_hash == row("L-1", 2, case_ref="corrected").row_hash()
    assert (last["L-2"].envelope.version, last["L-2"].op, last["L-2"].row_hash) == (3, "delete", "")
    assert len(acks) == len(changes) and store.unsent_acks() == []


def test_the_applied_positions_are_committed_to_the_copy_s_consumer_group_too(
    store: CopyStore, topics: Topics, kafka_admin: KafkaConnection, namespace: str
) -> None:
    """The store stays the truth (the sink seeks to its positions), but lag tools read the group."""
    topic = topics.views(AGENCY)
    send(kafka_admin, topic, [upsert(row(f"L-{i}")) for i in range(30)])
    sink = open_sink(store, kafka_admin, namespace, batch=7)
    caught_up(sink, kafka_admin)
    group = kafka_admin.group(f"copy-{AGENCY}")

    def committed() -> dict[int, int] | None:
        sink.poll()  # the commit is asynchronous
        found = group_offsets(kafka_admin, group, topic)
        return found if found == store.positions() else None

    try:
        offsets = wait_until("the group's offsets to reach the store's positions", committed)
    finally:
        sink.close()
    assert sum(offsets.values()) == 30


def test_a_commit_the_group_refused_is_sent_again_once_it_can_land(
    store: CopyStore, topics: Topics, kafka_admin: KafkaConnection, namespace: str
) -> None:
    """While another member holds the group, the broker refuses the sink's (memberless) commits;
    an idle sink must send them again, or its group offsets stay behind for good."""
    topic, group = topics.views(AGENCY), kafka_admin.group(f"copy-{AGENCY}")
    squatter = consumer(kafka_admin, group)
    squatter.subscribe([topic])
    wait_until("the squatter to join", lambda: squatter.poll(0.5) or squatter.assignment() or None)
    send(kafka_admin, topic, [upsert(row(f"L-{i}")) for i in range(10)])
    sink = open_sink(store, kafka_admin, namespace, batch=4)
    try:
        caught_up(sink, kafka_admin)
        for _ in range(5):
            sink.poll()
        assert group_offsets(kafka_admin, group, topic) != store.positions()  # refused while it was held
        squatter.close()

        def committed() -> dict[int, int] | None:
            sink.poll()  # idle: no batch would commit again
            found = group_offsets(kafka_admin, group, topic)
            return found if found == store.positions() else None

        assert sum(wait_until("the refused commit to land", committed).values()) == 10
    finally:
        sink.close()


def test_a_sink_closing_with_its_broker_gone_waits_seconds_and_the_next_start_re_sends(
    store: CopyStore, topics: Topics, kafka_admin: KafkaConnection, namespace: str
) -> None:
    """Its acknowledgements' producer loses the broker (a real client, its address now dead): the
    close is bounded (before: a 30 s flush, another in the producer's close, then librdkafka's
    close waiting for ever) and what was not confirmed goes out, unchanged, from the next start."""
    send(kafka_admin, topics.views(AGENCY), [upsert(row(f"L-{i}")) for i in range(5)])
    sink = real_sink(store, kafka_admin, namespace)
    sink.start()
    sink.reporter.close()
    sink.reporter = EventProducer(replace(kafka_admin, bootstrap="127.0.0.1:1"))  # nothing listens there
    caught_up(sink, kafka_admin)
    kept = store.unsent_acks()
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < CLOSE_WAIT_S + 10  # generous for a loaded machine; before: never
    assert len(kept) == 5 and store.unsent_acks() == kept

    open_sink(store, kafka_admin, namespace).close()
    acks = [e for e in read(kafka_admin, topics.copies_applied(AGENCY)) if isinstance(e, CopyApplied)]
    assert sorted(encode(a) for a in acks) == sorted(ack for _, _, ack in kept)
    assert store.unsent_acks() == []
