"""What the reconciler's `Runner` needs from the outside, as ports it is given (STYLE.md 3).

The runner's decisions (what to do with each message, when to act, what to publish) are
then tested with small in-process implementations (`tests/unit/reconciler/`), and the real
ones (`kafkalog.py`, `EventProducer`, `Lease`) are built by the CLI and proven on the
broker by the integration tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.core.events import Event
from services.core.snapshot import Snapshot

Partition = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True, slots=True)
class Record:
    """One message read from the backbone, with where it was and when the broker stamped it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    at: datetime | None = None  # the broker's (or producer's) timestamp, if it has one


class LogReader(Protocol):
    """Reads topics from their start (or a snapshot's positions); answers how far each partition reaches."""

    def open(self, topics: list[str], snapshot: Snapshot | None = None) -> dict[Partition, int]:
        """Start reading every partition of `topics` from offset 0, or from where `snapshot` left off
        if it describes this log (else it is emptied); return each partition's end offset now."""
        ...

    def read(self, limit: int, timeout: float) -> list[Record]:
        """Up to `limit` records, waiting at most `timeout` seconds for the first."""
        ...

    def end(self, topic: str, partition: int, fresh: bool = False) -> int:
        """The partition's end offset as last heard (cheap; negative when not known yet), or, `fresh`,
        as the broker answers now (negative when it does not)."""
        ...

    def close(self) -> None: ...


class Outbox(Protocol):
    """Where the runner publishes findings, repairs and refusals; `flush` waits for the broker."""

    def send(self, topic: str, key: str, event: Event, *, partition: int | None = None) -> None: ...

    def flush(self) -> None: ...


class Holder(Protocol):
    """Whether this reconciler holds the lease to act (`lease.py`)."""

    def held(self) -> bool: ...
