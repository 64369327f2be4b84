"""The ledger's tables: never ahead of the decisions the broker confirmed.

A batch's decisions (`ledger`, views, `rejected`) and its tables' changelog records all go out
through one producer (`outbox`), and the broker confirms different partitions in any order. Were
a table written at once, as Faust writes it (RocksDB at once, the changelog record queued), a worker
killed after a listing's v2 reached the changelog (or its own RocksDB) but before v1's `ledger` record
was confirmed would, on re-reading the batch, take v1 for a duplicate and re-state only v2: v1's
decision would never reach `ledger`. So a write (`table[key] = value`, `del table[key]`) is held in
memory, in the table's `pending` overlay and in its `Batch`, and every read the ledger makes sees
the overlay first. Only once the batch's decisions are confirmed does `Batch.flush` send its changelog
records, and once those are confirmed, write RocksDB and the changelog offset a recovery reads on
from; then the input is acked. Batches flush in the order they began: a key's records reach its
changelog partition, and its store, in the order it was written. Each batch flushes its own last
write of every key it wrote, even when a later batch has written the key again: it is acked once
flushed, and a crash before the later flush must find in the store what the committed input made.

The table is thus behind the confirmed decisions, never ahead: a batch re-read after a crash
re-derives the same decisions (duplicates, which the handler re-states byte for byte). Scans of the
store (`held.items()`, the expiry index's `ordered`) see a write one flush later: see `worker.Ledger`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import faust
from faust.stores.memory import Store as MemoryStore
from faust.streams import _current_event, current_event
from faust.types import TP

from services.ledger.layout import TABLES
from services.ledger.outbox import Deliveries, Outbox

# The batch the current asyncio task is handling: the agents interleave on one loop, and each
# write and send belongs to the batch of the task that made it.
CURRENT: ContextVar[Batch] = ContextVar("ledger_batch")


@dataclass(eq=False)
class Write:
    """One pending write: its batch, table, key, the partition it belongs to, its value (None: a delete)."""

    batch: Batch
    table: ConfirmedTable
    key: bytes
    partition: int
    value: bytes | None

    def send(self, deliveries: Deliveries) -> None:
        """Its changelog record, through the ledger's producer, counted in `deliveries`."""
        self.table.outbox.send_record(
            self.table.changelog_name, self.partition, self.key, self.value, deliveries
        )

    def latest(self) -> bool:
        """Whether no later write of the key replaced this one (nor a rebalance dropped it)."""
        return self.table.pending.get(self.key) is self


@dataclass(frozen=True)
class At:
    """What Faust's stores read of an event when they write: the partition (see `Batch._store`)."""

    @dataclass(frozen=True)
    class Message:
        partition: int

    message: Message


class ConfirmedTable(faust.Table):  # type: ignore[type-arg]
    """A Faust table of bytes whose writes wait in `pending` until their batch flushes (see module).

    Through Faust's aiokafka producer every changelog record was per-record Python on the event
    loop, and Faust's flush before a commit does not report a failed delivery; here they go through
    the ledger's own producer (`outbox`), each delivery awaited. Keys belong to one partition each
    (a listing's, or a source partition's position): the overlay is keyed by key alone."""

    outbox: Outbox  # set by `Ledger`, before anything is written
    pending: dict[bytes, Write]  # the latest write of each key not yet in the store
    lost: set[int]  # partitions revoked from this worker (and not assigned again since)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending, self.lost = {}, set()

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._pend(key, value)

    def __delitem__(self, key: bytes) -> None:
        self._pend(key, None)

    def __getitem__(self, key: bytes) -> bytes:
        value = self.stored(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.stored(key) is not None

    def get(self, key: bytes, default: Any = None) -> Any:
        value = self.stored(key)
        return default if value is None else value

    def stored(self, key: bytes) -> bytes | None:
        """The value of `key`: its pending write, else the store's (in the current event's partition).

        Straight from the store's own lookup (`_read`): keys and values are raw bytes (`app.RAW`), so
        Faust's serializers would return them as they are, and its `get` raises and catches a
        `KeyError` for every key not there yet, which is most of a new listing's reads."""
        write = self.pending.get(key)
        if write is not None:
            return write.value
        value = self._read(key)
        assert value is None or isinstance(value, bytes)
        return value

    @cached_property
    def _read(self) -> Callable[[bytes], bytes | None]:
        """The store's own lookup of a raw key: RocksDB's `_get`, the memory store's dict (its `_get`
        is the base class's stub, which answers None for every key)."""
        store = self.data
        if isinstance(store, MemoryStore):
            return store.data.get
        read: Callable[[bytes], bytes | None] = store._get  # type: ignore[attr-defined]
        return read

    def _pend(self, key: bytes, value: bytes | None) -> None:
        event = current_event()
        assert event is not None and isinstance(key, bytes), "a table of bytes, written in an event"
        write = Write(CURRENT.get(), self, key, event.message.partition, value)
        self.pending[key] = write
        write.batch.writes.append(write)

    def held_here(self, partition: int) -> bool:
        """Whether this worker still holds `partition` of the table (else its store is not its own)."""
        return partition not in self.lost

    @cached_property
    def changelog_name(self) -> str:
        return str(self.changelog_topic.get_topic_name())

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        """Drop the pending writes of partitions taken away, and remember them: a flush still in
        flight writes nothing more to their stores, which Faust closes here (their input is never
        acked here, and the new owner re-derives them). Faust waits for every message started to be
        acked before it revokes, so there are normally none."""
        mine = self.changelog_name
        self.lost -= {tp.partition for tp in newly_assigned if tp.topic == mine}
        self.lost |= {tp.partition for tp in revoked if tp.topic == mine}
        for key in [k for k, w in self.pending.items() if w.partition in self.lost]:
            del self.pending[key]
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)


@dataclass(eq=False)
class Batch:
    """What one batch of input caused: its sends (decisions) and its table writes, flushed in order.

    `sent` and `stored` tell the next batch that this one's changelog records are queued (so that
    its own follow them on each partition) and that its store writes are done (so that its own land
    after them)."""

    previous: Batch | None
    decisions: Deliveries = field(default_factory=Deliveries)  # what it publishes (`ledger`, views...)
    records: Deliveries = field(default_factory=Deliveries)  # its changelog records
    writes: list[Write] = field(default_factory=list)
    unsent: set[int] = field(default_factory=set)  # partitions whose writes `_send` gave up (`given_up`)
    sent: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    stored: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    async def flush(self) -> None:
        """Decisions confirmed, then the changelog records, then the store; raises if a delivery failed
        (the worker then stops: the input, never acked, is read again)."""
        try:
            await self.decisions.confirmed()
            if self.previous is not None:
                await self.previous.sent
            written = self._send()
            self.sent.set_result(None)
            offsets = await self.records.confirmed()
            if self.previous is not None:
                await self.previous.stored
            self._store(written, offsets)
            self.stored.set_result(None)
        finally:
            self.previous = None  # a long chain of finished batches is never kept alive

    def _send(self) -> list[Write]:
        """The changelog record of this batch's last write of each key, in a partition this worker
        still holds. A later batch's write of the key does not excuse this one: this batch is acked
        once its own are stored, and a crash before the later batch's flush must find this value."""
        self.unsent = self.given_up()
        leaves = self.leaves()
        for write in leaves:
            write.send(self.records)
        return leaves

    def leaves(self) -> list[Write]:
        """What the batch leaves behind: its last write of each key, in partitions still held here."""
        return [write for write in finals(self.writes) if write.table.held_here(write.partition)]

    def given_up(self) -> set[int]:
        """The partitions taken away (a rebalance) with writes of this batch not yet sent: their input
        must not be acked, or a commit could pass it with its state in no changelog and no store."""
        return {
            write.partition for write in finals(self.writes) if not write.table.held_here(write.partition)
        }

    def _store(self, written: Iterable[Write], offsets: dict[tuple[str, int], int]) -> None:
        """Write the confirmed records into the store, then each partition's changelog offset (a
        recovery reads the changelog on from there: `offsets`, the last confirmed in each, all this
        batch's); let go of the writes no later one replaced."""
        persisted: set[tuple[ConfirmedTable, int]] = set()
        at = At(At.Message(-1))
        for write in written:
            table, key = write.table, write.key
            if not table.held_here(write.partition):
                continue  # revoked while its record was in flight: the new owner reads it from the changelog
            if at.message.partition != write.partition:  # the store writes in the current event's partition
                at = At(At.Message(write.partition))  # held here: the context keeps a weak reference
                _current_event.set(weakref.ref(at))  # type: ignore[arg-type]
            if write.value is not None:
                table.data[key] = write.value
            elif key in table.data:
                del table.data[key]
            if write.latest():
                del table.pending[key]
            persisted.add((table, write.partition))
        for table, partition in persisted:
            offset = offsets[(table.changelog_name, partition)]
            table.data.set_persisted_offset(TP(table.changelog_name, partition), offset)


def finals(writes: Iterable[Write]) -> list[Write]:
    """The last of `writes` (one batch's) to each key of each table: what the batch leaves behind."""
    last: dict[tuple[int, bytes], Write] = {}
    for write in writes:
        last[(id(write.table), write.key)] = write
    return list(last.values())


def rocksdb_options(memory_mb: int, partitions: int) -> dict[str, int]:
    """Each partition's RocksDB of each table gets an even share of `memory_mb`: half block cache,
    half write buffers. Faust's defaults (a 2 GiB cache and 3 x 64 MiB buffers per database) would
    let a long-running worker's resident memory grow past what one machine of many can give it."""
    share = memory_mb * 1024 * 1024 // (len(TABLES) * partitions)
    return {"block_cache_size": share // 2, "write_buffer_size": share // 4, "max_write_buffer_number": 2}


def current() -> Batch:
    """The batch of the current task (`begin` set it)."""
    return CURRENT.get()
