"""The reconciler's `LogReader` on Kafka: one plain consumer, assigned every partition from offset 0
(the ledger's from where the reconciler's snapshot left off, if it describes this log).

No consumer group is joined (the group id is a fresh one of the reconciler's own, never
committed): every reconciler reads the whole backbone, and the lease (`lease.py`) alone
decides which one acts.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from services.core.connection import KafkaConnection
from services.core.errors import ConfigurationError
from services.core.kafka import consumer, end_offsets, raise_on_error
from services.core.snapshot import Snapshot, resume_from
from services.reconciler.ports import Partition, Record

TOPIC_WAIT_S = 15.0
FRESH_END_S = 5.0


def from_the_start(reader: Consumer, names: list[str], wait_s: float = TOPIC_WAIT_S) -> list[TopicPartition]:
    """Every partition of `names`, at offset 0; a topic created a moment ago may take a while to show."""
    deadline = time.monotonic() + wait_s
    while True:
        topics = reader.list_topics(timeout=10).topics
        missing = [n for n in names if n not in topics or not topics[n].partitions]
        if not missing:
            return [TopicPartition(n, p, OFFSET_BEGINNING) for n in names for p in topics[n].partitions]
        if time.monotonic() > deadline:
            raise ConfigurationError(f"topics {missing} do not exist: create them (accord backbone up)")
        time.sleep(0.5)


def timestamp_of(msg: Message) -> datetime | None:
    kind, millis = msg.timestamp()
    return datetime.fromtimestamp(millis / 1000, UTC) if kind and millis > 0 else None


def record_of(msg: Message) -> Record:
    """A consumed message as the runner reads it; a consume error is raised (`BrokerUnavailable`)."""
    raise_on_error(msg)
    return Record(msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(),
                  timestamp_of(msg))  # fmt: skip


class KafkaLog:
    """`LogReader` over a confluent-kafka consumer built from `connection` (`core/kafka.py`)."""

    def __init__(self, connection: KafkaConnection) -> None:
        self.connection = connection
        self._reader = consumer(connection, connection.group(f"follow-{uuid.uuid4()}"))

    def open(self, topics: list[str], snapshot: Snapshot | None = None) -> dict[Partition, int]:
        assignment = from_the_start(self._reader, topics)
        if snapshot is not None:
            found = [(tp.topic, tp.partition) for tp in assignment]
            start = resume_from(self._reader, snapshot, found, TOPIC_WAIT_S)
            assignment = [TopicPartition(t, p, start[(t, p)]) for t, p in found]
        ends = end_offsets(self.connection, topics)
        self._reader.assign(assignment)
        return {(tp.topic, tp.partition): high for tp, high in ends.items()}

    def read(self, limit: int, timeout: float) -> list[Record]:
        return [record_of(msg) for msg in self._reader.consume(num_messages=limit, timeout=timeout)]

    def end(self, topic: str, partition: int, fresh: bool = False) -> int:
        where = TopicPartition(topic, partition)
        if not fresh:
            return int(self._reader.get_watermark_offsets(where, cached=True)[1])
        try:
            found = self._reader.get_watermark_offsets(where, timeout=FRESH_END_S, cached=False)
        except KafkaException:
            return -1
        return -1 if found is None else int(found[1])  # None: the broker did not answer in time

    def close(self) -> None:
        self._reader.close()
