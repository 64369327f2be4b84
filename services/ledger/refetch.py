"""Re-read messages Faust skipped, straight from the broker.

faust-streaming 0.15 can drop a message it had fetched when its flow is suspended
(recovery after a restart seeks while a callback is pending), record the offset as
read, and commit past it as if it were a gap. Listing topics have no gaps (never
compacted, written without transactions), so the ledger keeps each partition's next
offset in its own table and, on a jump, reads the missing range here before going on.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from confluent_kafka import Message, TopicPartition

from services.core.connection import KafkaConnection
from services.core.errors import BrokerUnavailable
from services.core.kafka import consumer, raise_on_error
from services.ledger.record import Inbound


def read_range(
    connection: KafkaConnection, topic: str, partition: int, start: int, end: int, timeout: float = 30.0
) -> list[Inbound]:
    """Messages [start, end) of one partition, in order."""
    reader = consumer(connection, connection.group("refetch"))
    try:
        low, _ = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        start = max(start, low)  # a partition whose retention dropped its head starts later
        reader.assign([TopicPartition(topic, partition, start)])
        found: list[Inbound] = []
        deadline = time.monotonic() + timeout
        while len(found) < end - start:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"could not re-read {topic}[{partition}] {start}..{end - 1} in {timeout} s"
                )
            for msg in reader.consume(end - start - len(found), 1.0):
                raise_on_error(msg)
                offset = msg.offset() or 0
                if start <= offset < end and (not found or offset > found[-1].offset):
                    found.append(_read_back(msg, topic, partition, offset))
        return found
    finally:
        reader.close()


def committed(
    connection: KafkaConnection, group: str, parts: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The offsets `group` has committed on `parts` (0 where none), asked without joining the group."""
    probe = consumer(connection, group)
    try:
        found = probe.committed(parts, timeout=30)
    finally:
        probe.close()
    return {TopicPartition(tp.topic, tp.partition): max(tp.offset, 0) for tp in found}


def _read_back(msg: Message, topic: str, partition: int, offset: int) -> Inbound:
    """A message re-read from the broker, as if Faust had delivered it."""
    _, millis = msg.timestamp()
    key, value = msg.key(), msg.value()
    return Inbound(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key if isinstance(key, bytes) else None,
        payload=value if isinstance(value, bytes) else None,
        timestamp=datetime.fromtimestamp(millis / 1000, UTC),
    )
