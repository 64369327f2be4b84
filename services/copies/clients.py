"""The two Kafka clients a copy sink talks through, as small ports, and their real adapters.

The sink decides; these only move bytes. Taking them as parameters lets the sink's
decisions be unit-tested with in-process stand-ins (tests/unit/copies/fakes.py) while
`accord copy run` and the integration tests use the real clients built here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from services.core.cloudevent import Encoded, source
from services.core.connection import KafkaConnection
from services.core.errors import ConfigurationError
from services.core.events import Event
from services.core.kafka import EventProducer, consumer, raise_on_error


class Record(NamedTuple):
    """One message read from the view topic."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int = 0  # when the ledger wrote it (the broker's or producer's time), if known


class ViewFeed(Protocol):
    """Reads one view topic from positions the sink gives, and reports them to the consumer group."""

    def partitions(self, topic: str) -> list[int]:
        """The topic's partitions; `ConfigurationError` if it does not exist."""
        ...

    def assign(self, topic: str, partitions: list[int], positions: Mapping[int, int]) -> None:
        """Read `partitions` from `positions` (a partition not in it: from its beginning)."""
        ...

    def fetch(self, wait_s: float, most: int) -> list[Record]:
        """Wait up to `wait_s` for one message, then take what else is already there, up to `most`."""
        ...

    def commit(self, topic: str, positions: Mapping[int, int]) -> None:
        """Tell the consumer group how far the copy is (asynchronously: the store is the truth)."""
        ...

    def lag(self, topic: str, positions: Mapping[int, int]) -> dict[tuple[str, int], int]:
        """Messages beyond `positions` in each assigned partition, as last heard (no request)."""
        ...

    def close(self) -> None: ...


Delivery = Callable[[KafkaError | None, Any], None]


class Reporter(Protocol):
    """Sends what the copy reports (acknowledgements, refusals, digests); `EventProducer` is one."""

    def send(
        self,
        topic: str,
        key: str,
        event: Event,
        on_delivery: Delivery | None = None,
        *,
        encoded: bytes | None = None,
    ) -> None:
        """Queue `event` (`encoded`: its bytes, already encoded) for `topic` under `key`; `on_delivery`
        is called with the broker's refusal (or None) from a later `poll` or `flush`."""
        ...

    def send_encoded(
        self, topic: str, key: str, message: Encoded, on_delivery: Delivery | None = None
    ) -> None:
        """Queue an event already encoded (an acknowledgement written without its model), as `send`."""
        ...

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until the broker confirmed every message sent; `BrokerUnavailable` after `timeout`."""
        ...

    def poll(self, timeout: float) -> None: ...

    def close(self, timeout: float = 30.0) -> None:
        """Wait up to `timeout` for what is queued (`BrokerUnavailable` if some stays), then release."""
        ...


class KafkaViewFeed:
    """`ViewFeed` over a confluent-kafka consumer, assigned (never subscribed) in the copy's group."""

    def __init__(self, client: Consumer) -> None:
        self.client = client
        self._assigned: list[TopicPartition] = []
        self._ends: dict[tuple[str, int], int] = {}  # (topic, partition) -> high watermark last fetched

    def partitions(self, topic: str, timeout_s: float = 30.0) -> list[int]:
        """A topic created a moment ago may need a while to show."""
        deadline = time.monotonic() + timeout_s
        while True:
            metadata = self.client.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                return list(metadata.partitions)
            if time.monotonic() > deadline:
                raise ConfigurationError(f"topic {topic} does not exist: create the backbone's topics first")
            time.sleep(0.5)

    def assign(self, topic: str, partitions: list[int], positions: Mapping[int, int]) -> None:
        self.client.assign([TopicPartition(topic, p, positions.get(p, OFFSET_BEGINNING)) for p in partitions])
        self._assigned = [TopicPartition(topic, p) for p in partitions]

    def _note_ends(self) -> None:
        """The high watermarks the fetches reported, read on the sink's own thread: `assignment()`
        from the ops thread waited for the sink's poll (seconds, seen), so `lag` asks the client nothing."""
        for tp in self._assigned:
            _, high = self.client.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                self._ends[(tp.topic, tp.partition)] = int(high)

    def fetch(self, wait_s: float, most: int) -> list[Record]:
        """`consume` alone would hold a partial batch for its whole timeout, adding that to every
        change's latency: wait for the first message only, then take what is already fetched."""
        first = self.client.poll(wait_s)
        self._note_ends()
        if first is None:
            return []
        messages = [first, *self.client.consume(most - 1, 0)] if most > 1 else [first]
        for msg in messages:
            raise_on_error(msg)
        return [
            Record(m.topic() or "", m.partition() or 0, m.offset() or 0, m.value(), _millis(m))
            for m in messages
        ]

    def commit(self, topic: str, positions: Mapping[int, int]) -> None:
        if positions:
            offsets = [TopicPartition(topic, p, o) for p, o in sorted(positions.items())]
            self.client.commit(offsets=offsets, asynchronous=True)

    def lag(self, topic: str, positions: Mapping[int, int]) -> dict[tuple[str, int], int]:
        ends = dict(self._ends)
        return {(t, p): max(0, high - positions.get(p, 0)) for (t, p), high in ends.items() if t == topic}

    def close(self) -> None:
        self.client.close()


def _millis(msg: Message) -> int:
    kind, millis = msg.timestamp()
    return int(millis) if kind and millis > 0 else 0


def kafka_clients(
    connection: KafkaConnection, agency: str, namespace: str
) -> tuple[KafkaViewFeed, EventProducer]:
    """The real clients of `agency`'s copy: its feed in group `<principal>.copy-<agency>`, a producer
    whose messages name the copy as their CloudEvents source."""
    feed = KafkaViewFeed(consumer(connection, connection.group(f"copy-{agency}")))
    return feed, EventProducer(connection, source(namespace, agency))
