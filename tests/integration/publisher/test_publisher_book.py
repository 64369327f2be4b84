"""The publisher's book on disk, on the real broker: a restart reads only the log's tail after it, and a
book that does not describe the log (topic recreated, records deleted past it, another cluster) is
emptied and the log read again, never trusted."""

from __future__ import annotations

import shutil
import sqlite3
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_END, Producer, TopicPartition

from services.core.events import ListingState
from services.core.kafka import EventProducer, admin_client, create_topics, producer_config
from services.core.listing import evolve
from services.core.topics import Topics
from services.publisher.reader import LedgerReader
from services.publisher.state import LedgerBook
from tests.integration.publisher.conftest import WAIT, Backbone
from tests.support.factory import Ledgerbook


class CountingBook(LedgerBook):
    """Counts the states it is given: how much of the log a restart read."""

    taken = 0

    def take_state(self, state: ListingState, raw: bytes | None = None) -> None:
        self.taken += 1
        super().take_state(state, raw)


def fresh_topics(backbone: Backbone) -> Topics:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    specs = [s for s in topics.specs([], []) if s.name in (topics.ledger, topics.rejected)]
    create_topics(backbone.connection, specs, partitions=2, replication=1)
    return topics


def write_states(backbone: Backbone, topics: Topics, names: list[str]) -> None:
    book, producer = Ledgerbook(backbone.keystore), EventProducer(backbone.connection)
    for name in names:
        producer.send(topics.ledger, name, evolve(None, book.issue(name)))
    producer.close()


def read_into(backbone: Backbone, topics: Topics, path: Path) -> CountingBook:
    """Open the book at `path`, catch up with the log, close the reader (the book stays open)."""
    book = CountingBook({}, path)
    reader = LedgerReader(backbone.connection, [topics.ledger, topics.rejected], book, WAIT)
    try:
        reader.catch_up()
    finally:
        reader.close()
    return book


def test_a_restart_from_a_book_older_than_the_log_reads_only_the_tail(
    backbone: Backbone, tmp_path: Path
) -> None:
    topics = fresh_topics(backbone)
    write_states(backbone, topics, [f"L-{i}" for i in range(40)])
    read_into(backbone, topics, tmp_path / "book.sqlite3").close()
    shutil.copy(tmp_path / "book.sqlite3", tmp_path / "old.sqlite3")  # a snapshot, then the log moves on
    write_states(backbone, topics, [f"L-{i}" for i in range(40, 50)])
    again = read_into(backbone, topics, tmp_path / "old.sqlite3")
    assert again.taken == 10 and len(again) == 50
    assert again.state("L-45") is not None and again.state("L-3") is not None
    again.close()


def test_a_missing_book_is_made_from_the_whole_log(backbone: Backbone, tmp_path: Path) -> None:
    topics = fresh_topics(backbone)
    write_states(backbone, topics, [f"L-{i}" for i in range(15)])
    book = read_into(backbone, topics, tmp_path / "new" / "book.sqlite3")
    assert book.taken == 15 and len(book) == 15
    book.close()


def test_a_book_of_a_recreated_topic_is_emptied_and_the_log_read_again(
    backbone: Backbone, tmp_path: Path
) -> None:
    """Its stored offsets lie beyond the new topic's end: every listing it knew may be gone."""
    topics = fresh_topics(backbone)
    write_states(backbone, topics, [f"old-{i}" for i in range(30)])
    read_into(backbone, topics, tmp_path / "book.sqlite3").close()
    admin = admin_client(backbone.connection)
    for future in admin.delete_topics([topics.ledger, topics.rejected], operation_timeout=30).values():
        future.result()
    _recreate(backbone, topics)
    write_states(backbone, topics, ["new-0", "new-1"])
    again = read_into(backbone, topics, tmp_path / "book.sqlite3")
    assert len(again) == 2 and again.state("old-0") is None and again.state("new-1") is not None
    again.close()


def test_a_book_stopping_before_the_log_start_is_emptied_and_the_log_read_again(
    backbone: Backbone, tmp_path: Path
) -> None:
    """`rejected` is not compacted: records deleted past the stored offset (retention, delete-records)
    leave a gap the book cannot resume across, so it is made again from the whole log."""
    topics = fresh_topics(backbone)
    write_states(backbone, topics, [f"L-{i}" for i in range(20)])
    write_bytes(backbone, topics.rejected, 10)
    read_into(backbone, topics, tmp_path / "book.sqlite3").close()
    write_bytes(backbone, topics.rejected, 10)
    deleted = [TopicPartition(topics.rejected, p, OFFSET_END) for p in range(2)]
    admin = admin_client(backbone.connection)  # held until its futures are answered
    for future in admin.delete_records(deleted, operation_timeout=30, request_timeout=30).values():
        future.result(timeout=60)
    again = read_into(backbone, topics, tmp_path / "book.sqlite3")
    assert again.taken == 20 and len(again) == 20  # the ledger read again from its start
    again.close()


def write_bytes(backbone: Backbone, topic: str, count: int) -> None:
    """Records nobody can decode (the reader counts and passes over them)."""
    producer = Producer(producer_config(backbone.connection))
    for n in range(count):
        producer.produce(topic, key=f"k-{n}".encode(), value=b"\x00 not an event")
    assert producer.flush(30) == 0


def test_a_book_of_another_cluster_is_emptied_and_the_log_read_again(
    backbone: Backbone, tmp_path: Path
) -> None:
    topics = fresh_topics(backbone)
    write_states(backbone, topics, [f"L-{i}" for i in range(12)])
    read_into(backbone, topics, tmp_path / "book.sqlite3").close()
    with sqlite3.connect(tmp_path / "book.sqlite3") as db:  # by hand: a book carried from elsewhere
        db.execute("UPDATE meta SET value = 'another-cluster' WHERE name = 'cluster'")
        db.execute("INSERT INTO states SELECT 'forged', version, events, raw FROM states LIMIT 1")
    again = read_into(backbone, topics, tmp_path / "book.sqlite3")
    assert again.taken == 12 and len(again) == 12 and again.state("forged") is None
    again.close()


def _recreate(backbone: Backbone, topics: Topics) -> None:
    """Create the topics again (a deletion takes a moment to be done with)."""
    specs = [s for s in topics.specs([], []) if s.name in (topics.ledger, topics.rejected)]
    deadline = time.monotonic() + WAIT
    while True:
        try:
            create_topics(backbone.connection, specs, partitions=2, replication=1)
            metadata = admin_client(backbone.connection).list_topics(timeout=10)
            if all(s.name in metadata.topics and not metadata.topics[s.name].error for s in specs):
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)
