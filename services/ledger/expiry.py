"""Listings expire by themselves: which are due, and the sealed `ListingExpired` that ends each.

The ledger does not end a listing in place. It publishes a `ListingExpired`, signed by
the backbone, to `listings.backbone`, and applies it when it reads it back, like any
other event: one code path, and the expiry is in the system of record for audit.

Which listings are due is a table of its own (`expiring`), keyed by expiry time then
listing id, so "due by now" is a scan from the start of its keys that stops at the first
one later than now. The agent writes it with the listing's entry, in the listing's
partition; Faust keeps it in RocksDB and recovers it from its changelog with that partition.
A restart or a rebalance therefore reads nothing back, and no pass over all listings ever
runs (in the event loop or beside it); the worker holds in memory only the expiries in flight.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.core.events import Envelope, ListingExpired, ListingState
from services.core.partitioner import partition_of
from services.core.sealing import seal
from services.core.topics import BACKBONE
from services.core.views import LIVE

EXPIRY_NAMESPACE = uuid.UUID("3d7f6a2e-9c1b-4e55-b0a4-6c1f2e8d5b37")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
MARK = b"1"  # the index's value: everything it says is in the key
Due = tuple[datetime, str]  # a listing's expiry time as indexed, and its id


def expiry_of(state: ListingState, now: datetime, key: Ed25519PrivateKey) -> ListingExpired:
    """The event that ends `state`; its id depends only on the listing and version, so
    asking twice (after a crash, or from two workers) yields a duplicate the ledger ignores."""
    version = state.envelope.version + 1
    envelope = Envelope(
        event_id=str(uuid.uuid5(EXPIRY_NAMESPACE, f"{state.envelope.listing_id}:{version}")),
        listing_id=state.envelope.listing_id,
        version=version,
        agency=BACKBONE,
        occurred_at=state.expires_at,
        recorded_at=now,
    )
    return seal(ListingExpired(envelope=envelope, expired_at=state.expires_at), state.envelope.hash, key)


def index_key(expires_at: datetime, listing_id: str) -> bytes:
    """8 bytes of microseconds since the epoch, big-endian, then the id: byte order is time order."""
    return ((expires_at - EPOCH) // MICROSECOND).to_bytes(8, "big") + listing_id.encode()


def key_of(state: ListingState | None) -> bytes | None:
    """Where the index holds `state`; None for a listing that is not live (nothing to expire)."""
    if state is None or state.status not in LIVE:
        return None
    return index_key(state.expires_at, state.envelope.listing_id)


def due_of(key: bytes) -> Due:
    return EPOCH + int.from_bytes(key[:8], "big") * MICROSECOND, key[8:].decode()


class Ordered(Protocol):
    """A store's keys in byte order, of the partitions this worker holds (see `ordered`)."""

    def keys_from(self, start: bytes) -> Iterator[bytes]: ...

    def size(self) -> int: ...


class ExpiryIndex:
    """The `expiring` table and the expiries in flight, soonest first.

    A due listing stays due, asked again on every tick, until `written` says its expiry was
    confirmed by the broker; its key goes when the ledger applies its end (`follow`). A listing
    whose expiry lost a race (a correction applied first) is due again at its new time. So
    nothing is forgotten before its expiry is written, and a written one is not asked for twice.

    A crash in the middle of a batch may leave the table without a key the listing's entry
    has (the entry's changelog record landed, the index's did not) or with one it no longer
    has. The first is mended when the batch is read again: `follow` writes the entry's key
    again for every message of a live listing that applies nothing, re-stated ones included.
    The second only costs a look: the tick finds the key does not match the entry (`stale`),
    and the agent deletes it with the next message of that partition (`tidy`): only the agent
    may write a table.
    """

    def __init__(self, table: MutableMapping[bytes, bytes], ordered: Callable[[], Ordered], partitions: int):
        self._table, self._ordered, self._partitions = table, ordered, partitions
        self._asked: set[str] = set()
        self._written: set[str] = set()
        self._stale: dict[bytes, str] = {}

    def follow(self, before: ListingState | None, after: ListingState | None, applied: bool) -> None:
        """Keep the table equal to the listing's entry, after one of its messages (in the agent)."""
        old, new = key_of(before), key_of(after)
        if applied and after is not None:
            self._asked.discard(after.envelope.listing_id)
            self._written.discard(after.envelope.listing_id)
            if old == new:
                return  # a change that keeps the expiry: the key is there (or mended on re-reading)
            if old is not None and old in self._table:
                del self._table[old]
        if new is not None:
            self._table[new] = MARK

    def due(self, now: datetime, limit: int) -> list[Due]:
        """Listings due by `now` whose expiry is not written yet, soonest first: at most `limit`, so
        that one tick never works through a whole backlog (the rest wait for the next ticks)."""
        stamp = index_key(now, "")[:8]
        due: list[Due] = []
        for key in self._ordered().keys_from(b""):
            if key[:8] > stamp or len(due) >= limit:
                break
            expires_at, listing_id = due_of(key)
            if listing_id not in self._written and key not in self._stale:
                due.append((expires_at, listing_id))
        self._asked.update(listing_id for _, listing_id in due)
        return due

    def written(self, listing_id: str) -> None:
        """The broker confirmed this listing's expiry: wait for it to be applied."""
        if listing_id in self._asked:
            self._asked.discard(listing_id)
            self._written.add(listing_id)

    def stale(self, expires_at: datetime, listing_id: str) -> None:
        """The entry no longer expires at this key (see the class): skip it until `tidy` deletes it."""
        self._asked.discard(listing_id)
        self._stale[index_key(expires_at, listing_id)] = listing_id

    def tidy(self, partition: int, state_of: Callable[[str], ListingState | None]) -> None:
        """Delete the stale keys of `partition` that still do not match their entry (in the agent,
        handling a message of that partition, so that the deletes go to the partition's changelog)."""
        if not self._stale:
            return
        for key, listing_id in list(self._stale.items()):
            if partition_of(listing_id.encode(), self._partitions) == partition:
                del self._stale[key]
                if key_of(state_of(listing_id)) != key and key in self._table:
                    del self._table[key]

    def size(self) -> int:
        """About how many live listings the index holds (RocksDB's estimate: counting is a scan)."""
        return self._ordered().size()


def ordered(table: Any) -> Ordered:
    """The ordered keys of a Faust table's store: RocksDB's, merged over this worker's active
    partitions, or the memory store's, sorted on each call (for tests: a small table)."""
    store = table.data
    if hasattr(store, "_dbs_for_actives"):
        return _RocksOrder(store)
    return _DictOrder(store.data)


class _RocksOrder:
    def __init__(self, store: Any) -> None:
        self._store = store

    def keys_from(self, start: bytes) -> Iterator[bytes]:
        """Faust's offset key (`__faust\\x00offset__`) sorts after every time key (first byte 0)."""
        dbs = list(self._store._dbs_for_actives())
        return heapq.merge(*(db.keys(from_key=start) for db in dbs))

    def size(self) -> int:
        dbs = self._store._dbs_for_actives()
        return sum(db.property_int_value("rocksdb.estimate-num-keys") or 0 for db in dbs)


class _DictOrder:
    def __init__(self, data: Mapping[bytes, Any]) -> None:
        self._data = data

    def keys_from(self, start: bytes) -> Iterator[bytes]:
        return iter(sorted(k for k in self._data if k >= start))

    def size(self) -> int:
        return len(self._data)
