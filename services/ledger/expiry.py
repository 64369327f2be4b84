"""Listings expire by themselves: which are due, and the sealed `ListingExpired` that ends each.

The ledger does not end a listing in place. It publishes a `ListingExpired`, signed by
the backbone, to `listings.backbone`, and applies it when it reads it back, like any
other event: one code path, and the expiry is in the system of record for audit.
"""

from __future__ import annotations

import heapq
import uuid
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.core.events import Envelope, ListingExpired, ListingState
from services.core.sealing import seal
from services.core.topics import BACKBONE
from services.core.views import LIVE

EXPIRY_NAMESPACE = uuid.UUID("3d7f6a2e-9c1b-4e55-b0a4-6c1f2e8d5b37")


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


class ExpiryIndex:
    """When each live listing of this worker's partitions expires, soonest first.

    A heap with lazy deletion. A due listing stays due, asked again on every tick, until
    `written` says its expiry was confirmed by the broker; it stays known until the ledger
    applies its end (`track` of an ended state). A listing whose expiry lost a race (a
    correction applied first) is due again when that correction is tracked. So nothing is
    forgotten before its expiry is written, and a written one is not asked for twice.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._current: dict[str, datetime] = {}
        self._due: set[str] = set()
        self._written: set[str] = set()

    def track(self, state: ListingState) -> None:
        listing_id = state.envelope.listing_id
        pending = listing_id in self._due or listing_id in self._written
        self._due.discard(listing_id)
        self._written.discard(listing_id)
        if state.status not in LIVE:
            self._current.pop(listing_id, None)
            return
        if pending or self._current.get(listing_id) != state.expires_at:
            self._current[listing_id] = state.expires_at
            heapq.heappush(self._heap, (state.expires_at, listing_id))

    def due(self, now: datetime, limit: int | None = None) -> list[str]:
        """Listings due by `now` whose expiry is not written yet, in id order: at most `limit`,
        soonest first, so that one tick never works through a whole backlog (the rest wait)."""
        while self._heap and self._heap[0][0] <= now and (limit is None or len(self._due) < limit):
            expires_at, listing_id = heapq.heappop(self._heap)
            if self._current.get(listing_id) == expires_at and listing_id not in self._written:
                self._due.add(listing_id)
        due = sorted(self._due)
        return due if limit is None else due[:limit]

    def written(self, listing_id: str) -> None:
        """The broker confirmed this listing's expiry: wait for it to be applied."""
        if listing_id in self._due:
            self._due.discard(listing_id)
            self._written.add(listing_id)

    def forget(self, listing_id: str) -> None:
        """Drop a listing this worker no longer holds (its partition moved to another worker)."""
        self._current.pop(listing_id, None)
        self._due.discard(listing_id)
        self._written.discard(listing_id)

    def merge(self, other: ExpiryIndex) -> None:
        """Add what `other` knows and this index does not (an index rebuilt off the event loop)."""
        for listing_id, expires_at in other._current.items():
            if listing_id not in self._current:
                self._current[listing_id] = expires_at
                heapq.heappush(self._heap, (expires_at, listing_id))

    def clear(self) -> None:
        self._heap.clear()
        self._current.clear()
        self._due.clear()
        self._written.clear()

    def __len__(self) -> int:
        return len(self._current)
