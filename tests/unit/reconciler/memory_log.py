"""An in-process backbone for the runner's unit tests: the `LogReader` and `Outbox` ports over lists.

What the runner sends becomes readable only once flushed (the broker confirmed it), and it is read
back like any other message, as on Kafka, where the reconciler reads its own `findings`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from services.core.events import Event
from services.core.kafka import DeliveryRefused, Refused, partition_for
from services.core.serde import decode, encode
from services.core.snapshot import Snapshot
from services.reconciler.ports import Partition, Record


@dataclass
class MemoryLog:
    """Topics as lists of partitions; `per_read` caps a batch, `idle` is called when nothing is left."""

    partitions: int = 1
    per_read: int = 1000
    idle: Callable[[], None] = lambda: None
    at: datetime | None = None  # the timestamp given to what the runner sends
    topics: dict[str, list[list[Record]]] = field(default_factory=dict)
    queued: list[tuple[str, str, Event, int | None]] = field(default_factory=list)
    positions: dict[Partition, int] = field(default_factory=dict)
    closed: bool = False
    refusing: set[str] = field(default_factory=set)  # topics whose sends the "broker" refuses at flush

    def append(
        self, topic: str, key: str, value: bytes | Event, at: datetime | None, partition: int | None = None
    ) -> Record:
        parts = self._topic(topic)
        where = partition_for(key, len(parts)) if partition is None else partition
        data = encode(value) if not isinstance(value, bytes) else value
        record = Record(topic, where, len(parts[where]), key.encode(), data, at)
        parts[where].append(record)
        return record

    def _topic(self, name: str) -> list[list[Record]]:
        return self.topics.setdefault(name, [[] for _ in range(self.partitions)])

    def events(self, topic: str) -> list[Event]:
        return [decode(r.value) for part in self._topic(topic) for r in part]

    def records(self, topic: str) -> list[Record]:
        return [r for part in self._topic(topic) for r in part]

    # --- LogReader ---------------------------------------------------------------

    def open(self, topics: list[str], snapshot: Snapshot | None = None) -> dict[Partition, int]:
        """From offset 0, or a snapshot's positions (this log is never another: nothing is emptied)."""
        ends = {(name, p): len(part) for name in topics for p, part in enumerate(self._topic(name))}
        self.positions = dict.fromkeys(ends, 0) | (snapshot.positions() if snapshot else {})
        return ends

    def read(self, limit: int, timeout: float) -> list[Record]:
        batch: list[Record] = []
        for (topic, p), at in self.positions.items():
            taken = self.topics[topic][p][at : at + min(limit, self.per_read) - len(batch)]
            self.positions[(topic, p)] = at + len(taken)
            batch += taken
        if not batch:
            self.idle()
        return batch

    def end(self, topic: str, partition: int, fresh: bool = False) -> int:
        return len(self._topic(topic)[partition])

    def close(self) -> None:
        self.closed = True

    # --- Outbox ------------------------------------------------------------------

    def send(self, topic: str, key: str, event: Event, *, partition: int | None = None) -> None:
        self.queued.append((topic, key, event, partition))

    def flush(self) -> None:
        """Append what was sent, but refuse what went to a `refusing` topic, as `EventProducer` does."""
        refused = [
            Refused(t, k.encode(), encode(e), "denied") for t, k, e, _ in self.queued if t in self.refusing
        ]
        for topic, key, event, partition in self.queued:
            if topic not in self.refusing:
                self.append(topic, key, event, self.at, partition)
        self.queued.clear()
        if refused:
            raise DeliveryRefused(refused)


@dataclass
class Flag:
    """A lease as a switch (`Holder`)."""

    on: bool = False

    def held(self) -> bool:
        return self.on
