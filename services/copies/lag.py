"""How far a copy is behind its view topic: high watermark minus the copy's position, per partition."""

from __future__ import annotations

from confluent_kafka import KafkaException, TopicPartition

from services.core.connection import KafkaConnection
from services.core.kafka import consumer


def view_lag(
    connection: KafkaConnection, topic: str, positions: dict[int, int], timeout: float
) -> dict[int, int] | None:
    """Changes in `topic` the copy has not applied yet, or None when the broker does not answer."""
    probe = consumer(connection, connection.group("copy-lag"), **{"socket.timeout.ms": int(timeout * 1000)})
    try:
        metadata = probe.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return None
        lag = {}
        for partition in metadata.partitions:
            low, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            lag[partition] = max(0, high - max(low, positions.get(partition, 0)))
        return lag
    except KafkaException:
        return None
    finally:
        probe.close()
