"""Reads the listing topics into the publisher's `ListingBook`, up to where they end right now.

One consumer is assigned every partition of every listing topic from offset 0 and
never commits: the log, not a group offset, is where the publisher's knowledge
comes from. `catch_up` asks the broker for the current end of each partition (one
ListOffsets request) and reads until there, so a decision taken afterwards has
seen every event the broker confirmed before it: this process's and any other's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from services.core.connection import KafkaConnection
from services.core.errors import BrokerUnavailable, ConfigurationError, ContractError
from services.core.kafka import admin_client, consumer, decode_message, raise_on_error
from services.core.serde import Decoded
from services.publisher.state import Position

Sink = Callable[[Decoded, Position, bytes], None]
Partition = tuple[str, int]


# Answers a broker gives while leadership settles (just after topics are made, or on failover);
# librdkafka does not flag the epoch ones retriable, yet they pass as soon as metadata catches up.
SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.OFFSET_NOT_AVAILABLE,
}


def transient(error: KafkaError) -> bool:
    """True for an answer that passes once leadership settles: worth asking again until the timeout."""
    return bool(error.retriable()) or error.code() in SETTLING


class LogReader:
    """Tracks, per partition, the next offset to read; opens its clients on first use."""

    def __init__(self, connection: KafkaConnection, topics: Iterable[str], timeout: float) -> None:
        self._connection = connection
        self._topics = sorted(topics)
        self._timeout = timeout
        self._admin: Any = None
        self._consumer: Any = None
        self.positions: dict[Partition, int] = {}
        self.undecodable = 0

    def _open(self) -> None:
        if self._consumer is not None:
            return
        admin = admin_client(self._connection)
        for topic, partitions in self._partitions(admin).items():
            self.positions.update({(topic, p): 0 for p in partitions})
        reader = consumer(self._connection, self._connection.group("publisher"), **{"fetch.wait.max.ms": 50})
        reader.assign([TopicPartition(t, p, 0) for t, p in self.positions])
        self._admin, self._consumer = admin, reader

    def _partitions(self, admin: AdminClient) -> dict[str, list[int]]:
        """Every listing topic's partitions, once the broker knows their leaders."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                metadata = admin.list_topics(timeout=self._timeout)
            except KafkaException as e:
                raise BrokerUnavailable(f"cannot reach Kafka at {self._connection}: {e}") from e
            found = {t: metadata.topics.get(t) for t in self._topics}
            missing = [t for t, m in found.items() if m is None or m.error is not None]
            if not missing:
                return {t: list(m.partitions) for t, m in found.items() if m is not None}
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"topics {missing} do not exist (or have no leader): create the backbone's topics "
                    "(accord backbone up --topics-only)"
                )
            time.sleep(0.2)

    def catch_up(self, sink: Sink) -> None:
        """Read every partition up to the end it has now."""
        self._open()
        self._read_to(self._ends(), sink)

    def read_through(self, at: Position, sink: Sink) -> None:
        """Read one partition up to and including offset `at.offset`."""
        self._open()
        self._read_to({(at.topic, at.partition): at.offset + 1}, sink)

    def position(self, topic: str, partition: int) -> int:
        return self.positions.get((topic, partition), 0)

    def skip(self, at: Position) -> None:
        """`at` was recorded without reading it back; the read will pass over it."""
        key = (at.topic, at.partition)
        if self.positions.get(key) == at.offset:
            self.positions[key] = at.offset + 1

    def _ends(self) -> dict[Partition, int]:
        """Current end offsets; retried while the broker says "try again" (e.g. a new leader)."""
        query = {TopicPartition(t, p): OffsetSpec.latest() for t, p in self.positions}  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                futures = self._admin.list_offsets(query, request_timeout=self._timeout)
                return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}
            except KafkaException as e:
                if not transient(e.args[0]) or time.monotonic() > deadline:
                    raise BrokerUnavailable(f"cannot read the ends of the listing topics: {e}") from e
                time.sleep(0.1)

    def _read_to(self, targets: dict[Partition, int], sink: Sink) -> None:
        """Read until every target; give up only after `timeout` without progress, never for length:
        a publisher restarted over a long log must read it all, however long that takes."""
        deadline = time.monotonic() + self._timeout
        behind = {tp: end for tp, end in targets.items() if self.positions.get(tp, 0) < end}
        while behind:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"reading the listing topics made no progress for {self._timeout} s; "
                    f"{len(behind)} partitions are still behind"
                )
            batch = self._next_batch()
            for msg in batch:
                self._take(msg, sink)
            if batch:
                deadline = time.monotonic() + self._timeout
            self._pass_markers(behind)
            behind = {tp: end for tp, end in behind.items() if self.positions[tp] < end}

    def _pass_markers(self, behind: dict[Partition, int]) -> None:
        """Step over offsets no message is delivered for (transaction markers from other writers)."""
        for tp in self._consumer.position([TopicPartition(t, p) for t, p in behind]):
            key = (tp.topic, tp.partition)
            self.positions[key] = max(self.positions[key], tp.offset)

    def _next_batch(self) -> list[Message]:
        """What has arrived, as soon as anything has: `consume` alone would wait for a full batch."""
        first = self._consumer.poll(0.1)
        if first is None:
            return []
        return [first, *self._consumer.consume(num_messages=499, timeout=0)]

    def _take(self, msg: Message, sink: Sink) -> None:
        raise_on_error(msg)
        key, offset = (msg.topic() or "", msg.partition() or 0), msg.offset() or 0
        if offset < self.positions.get(key, 0):
            return
        self.positions[key] = offset + 1
        try:
            decoded = decode_message(msg)
        except ContractError:
            self.undecodable += 1  # the ledger sends it to `rejected`; it changes no listing
            return
        sink(decoded, Position(key[0], key[1], offset), msg.key() or b"")

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self._admin = None  # an AdminClient has no close(): dropping the last reference releases it
