"""Reading the log back: every message of some topics, in batches, decoded, with where it came from.

Replays go through `services.core.kafka.read_all`, which consumes in batches up to
the high watermarks it saw when it started, so a replay is a consistent cut of the
log and ends even while producers keep writing. Undecodable bytes are reported to
the caller with their position and skipped: one bad message never hides the rest.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Container, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from confluent_kafka import Message

from services.core.connection import KafkaConnection
from services.core.errors import ConfigurationError, ContractError
from services.core.events import Event, Rejected
from services.core.kafka import consumer, end_offsets, read_all
from services.core.partitioner import partition_of
from services.core.policy import Policy
from services.core.position import Position
from services.core.serde import Decoded, decode_full
from services.core.topics import Topics

BATCH = 5000
METER_EVERY = 1000
Meter = Callable[[int], None]


class Replayed(NamedTuple):
    """One decoded message and its position (a tuple: a replay makes one per message)."""

    decoded: Decoded
    position: Position

    @property
    def event(self) -> Event:
        return self.decoded.event


@dataclass(frozen=True)
class Undecodable:
    """A message whose bytes do not fit the contract."""

    position: Position
    reason: str


def listing_owners(topics: Topics, policy: Policy) -> dict[str, str]:
    """The system of record: one topic per issuing agency, plus the backbone's (expiries), by owner."""
    return topics.listing_authors(policy.issuers)


def listing_topics(topics: Topics, policy: Policy) -> list[str]:
    return list(listing_owners(topics, policy))


def require_topics(connection: KafkaConnection, names: Iterable[str], timeout: float = 10.0) -> None:
    """Fail with the names of missing topics rather than a bare KeyError halfway through."""
    probe = consumer(connection, connection.group("audit"))
    try:
        present = probe.list_topics(timeout=timeout).topics
    finally:
        probe.close()
    missing = sorted(set(names) - set(present))
    if missing:
        raise ConfigurationError(f"missing topics {missing}: run `accord backbone up --topics-only`")


def size_of(connection: KafkaConnection, names: Iterable[str]) -> int:
    """How many offsets the topics span: the length of a replay's progress bar."""
    require_topics(connection, names)
    return sum(end_offsets(connection, names).values())


def messages(
    connection: KafkaConnection,
    names: list[str],
    meter: Meter | None = None,
    partitions: Container[int] | None = None,
) -> Iterator[Message]:
    """Every current message of `names` (of the partitions numbered in `partitions`, if given),
    from the start, consumed in batches of `BATCH`."""
    require_topics(connection, names)
    count = 0
    for msg in read_all(connection, names, batch=BATCH, partitions=partitions):
        yield msg
        count += 1
        if meter is not None and count % METER_EVERY == 0:
            meter(METER_EVERY)
    if meter is not None:
        meter(count % METER_EVERY)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a replay runs, as it was after.

    A replay keeps what it folds (states, links, expected views): millions of objects that
    each collection would walk again, a quarter of a replay's time, to find no garbage
    (decoded events form no reference cycles). Reference counting still frees everything."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Placements:
    """Whether events sit on their listing's own partition, as the ledger requires of them.

    The partitioner hashes in pure Python (15 µs a key here), so each listing's own partition
    is computed once per replay and remembered beside what the replay keeps of it anyway."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        self.own: dict[tuple[str, int], int] = {}

    def misplaced(self, listing_id: str, where: Position) -> bool:
        count = self.counts.get(where.topic)
        if count is None:
            return False
        key = (listing_id, count)
        own = self.own.get(key)
        if own is None:
            own = self.own[key] = partition_of(listing_id.encode(), count)
        return own != where.partition


def position_of(msg: Message) -> Position:
    return Position(msg.topic() or "?", msg.partition() or 0, msg.offset() or 0)


def decoded(
    source: Iterable[Message], on_bad: Callable[[Undecodable], None] | None = None
) -> Iterator[Replayed]:
    """Decode each message (`serde.decode_full`); hand undecodable ones to `on_bad` and go on."""
    for msg in source:
        where = position_of(msg)
        try:
            item = decode_full(msg.value(), *where)
        except ContractError as e:
            if on_bad is not None:
                on_bad(Undecodable(where, str(e).removeprefix(f"{where}: ")))
            continue
        yield Replayed(item, where)


def refused_positions(connection: KafkaConnection, rejected_topic: str) -> set[Position]:
    """Where the ledger refused events (bad seal, broken rule): the replica must not apply them either."""
    return {
        Position(r.event.source_topic, r.event.partition, r.event.offset)
        for r in decoded(messages(connection, [rejected_topic]))
        if isinstance(r.event, Rejected)
    }
