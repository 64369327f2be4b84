"""How far a copy is behind its view topic: high watermark minus the copy's position, per partition."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services.core.connection import KafkaConnection
from services.core.kafka import consumer

Watermarks = dict[int, tuple[int, int]]  # partition -> (low, high)
RETRY_S = 0.1  # after a read that found nothing (no topic, no broker), the next one may ask again


def view_lag(
    connection: KafkaConnection, topic: str, positions: dict[int, int], timeout: float
) -> dict[int, int] | None:
    """Changes in `topic` the copy has not applied yet, or None when the broker does not answer."""
    probe = _probe(connection, timeout)
    try:
        return lag_of(_watermarks(probe, topic, timeout), positions)
    finally:
        probe.close()


class ViewLag:
    """`view_lag` for a server answering many checks: one consumer kept open, and the topic's
    watermarks re-read at most every `max_age_s`, by one request while the others use the last ones,
    so a check costs no broker round trip (a second-old watermark against an SLA of minutes)."""

    def __init__(
        self, connection: KafkaConnection, topic: str, timeout: float, max_age_s: float = 1.0
    ) -> None:
        self.connection, self.topic, self.timeout, self.max_age_s = connection, topic, timeout, max_age_s
        self.probe = _probe(connection, timeout)
        self.refreshing = threading.Lock()
        self.marks: Watermarks | None = None
        self.read_at = float("-inf")

    def __call__(self, positions: dict[int, int]) -> dict[int, int] | None:
        first = self.read_at == float("-inf")  # nothing to answer with yet: wait for the first read
        if self._due() and self.refreshing.acquire(blocking=first):
            try:
                if self._due():
                    self.marks, self.read_at = self._read(), time.monotonic()
                    if self.marks is None:  # asked again soon, not after max_age_s: a topic created
                        self.read_at -= self.max_age_s - min(RETRY_S, self.max_age_s)  # since counts
            finally:
                self.refreshing.release()
        return lag_of(self.marks, positions)

    def _read(self) -> Watermarks | None:
        """The watermarks; a probe that failed is replaced and asked once more (seen: a connection
        dropped during its authentication left the kept consumer unanswered for that request)."""
        marks = _watermarks(self.probe, self.topic, self.timeout)
        if marks is None:
            self.probe.close()
            self.probe = _probe(self.connection, self.timeout)
            marks = _watermarks(self.probe, self.topic, self.timeout)
        return marks

    def _due(self) -> bool:
        return time.monotonic() - self.read_at > self.max_age_s

    def close(self) -> None:
        self.probe.close()


def lag_of(marks: Watermarks | None, positions: dict[int, int]) -> dict[int, int] | None:
    if marks is None:
        return None
    return {p: max(0, high - max(low, positions.get(p, 0))) for p, (low, high) in marks.items()}


def _probe(connection: KafkaConnection, timeout: float) -> Consumer:
    return consumer(connection, connection.group("copy-lag"), **{"socket.timeout.ms": int(timeout * 1000)})


def _watermarks(probe: Consumer, topic: str, timeout: float) -> Watermarks | None:
    """Each partition's (low, high), or None when the broker does not answer or knows no such topic."""
    try:
        metadata = probe.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return None
        return {
            p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            for p in metadata.partitions
        }
    except KafkaException:
        return None
