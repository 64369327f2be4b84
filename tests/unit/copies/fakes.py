"""In-process stand-ins for the sink's two Kafka ports (`ViewFeed`, `Reporter`), for unit tests.

Not mocks: small working implementations of the ports, holding a view topic as lists of
records and what was sent as a list, so a test drives the real `Sink` and a real store and
asserts on outcomes. The integration tests run the same sink on the real broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError

from services.copies.clients import Delivery, Record
from services.core.cloudevent import Encoded
from services.core.errors import BrokerUnavailable
from services.core.events import Event, ViewChanged
from services.core.kafka import partition_for
from services.core.serde import decode, encode


@dataclass
class FakeFeed:
    """A view topic in memory: `append` produces, `fetch` reads from the assigned positions."""

    topic: str
    count: int = 3
    log: dict[int, list[bytes | None]] = field(default_factory=dict)
    at: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    closed: bool = False

    def append(self, value: bytes | None, key: str, partition: int | None = None) -> tuple[int, int]:
        where = partition_for(key, self.count) if partition is None else partition
        self.log.setdefault(where, []).append(value)
        return where, len(self.log[where]) - 1

    def change(self, change: ViewChanged) -> tuple[int, int]:
        return self.append(encode(change), change.envelope.listing_id)

    def partitions(self, topic: str) -> list[int]:
        assert topic == self.topic
        return list(range(self.count))

    def assign(self, topic: str, partitions: list[int], positions: Mapping[int, int]) -> None:
        self.at = {p: positions.get(p, 0) for p in partitions}

    def fetch(self, wait_s: float, most: int) -> list[Record]:
        batch: list[Record] = []
        for p in sorted(self.at):
            values = self.log.get(p, [])
            while self.at[p] < len(values) and len(batch) < most:
                batch.append(Record(self.topic, p, self.at[p], values[self.at[p]]))
                self.at[p] += 1
        return batch

    def commit(self, topic: str, positions: Mapping[int, int]) -> None:
        assert topic == self.topic
        self.committed |= positions

    def lag(self, topic: str, positions: Mapping[int, int]) -> dict[tuple[str, int], int]:
        return {(topic, p): max(0, len(self.log.get(p, [])) - positions.get(p, 0)) for p in self.at}

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeReporter:
    """Keeps what is sent; `failing` makes `flush` fail as a broker that does not confirm would,
    `refusing` reports every message refused (as a broker denying the topic would)."""

    sent: list[tuple[str, str, Event]] = field(default_factory=list)
    queued: list[tuple[str, str, Event, Delivery | None]] = field(default_factory=list)
    failing: bool = False
    refusing: bool = False

    def send(
        self,
        topic: str,
        key: str,
        event: Event,
        on_delivery: Delivery | None = None,
        *,
        encoded: bytes | None = None,
    ) -> None:
        assert encoded is None or encoded == encode(event), "the bytes sent are not the event's"
        self.queued.append((topic, key, event, on_delivery))

    def send_encoded(
        self, topic: str, key: str, message: Encoded, on_delivery: Delivery | None = None
    ) -> None:
        """Keeps the event the bytes decode to, once checked against what its headers would say."""
        event = decode(message.value)
        assert message == Encoded.of(event, message.value), "the headers do not say what the bytes do"
        self.queued.append((topic, key, event, on_delivery))

    def flush(self, timeout: float = 30.0) -> None:
        """Confirms every queued message to its `on_delivery` (or refuses it); `failing`: loses them."""
        if self.failing:
            self.queued.clear()  # lost with the producer
            raise BrokerUnavailable("no confirmation (test)")
        queued, self.queued = self.queued, []
        refusal = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED) if self.refusing else None
        for topic, key, event, on_delivery in queued:
            if refusal is None:
                self.sent.append((topic, key, event))
            if on_delivery is not None:
                on_delivery(refusal, None)

    def poll(self, timeout: float) -> None:
        self.flush()

    def close(self, timeout: float = 30.0) -> None:
        self.flush()

    def on(self, topic: str) -> list[Event]:
        return [event for where, _, event in self.sent if where == topic]
