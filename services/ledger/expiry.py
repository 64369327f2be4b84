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

from services.core.crypto import seal
from services.core.events import Envelope, ListingExpired, ListingState
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

    A heap with lazy deletion: `track` supersedes a listing's earlier entry, `due` pops
    what is due. A popped listing comes back when the ledger applies its next version
    (say a correction that won the race against the expiry), so nothing is forgotten.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._current: dict[str, datetime] = {}

    def track(self, state: ListingState) -> None:
        listing_id = state.envelope.listing_id
        if state.status not in LIVE:
            self._current.pop(listing_id, None)
            return
        if self._current.get(listing_id) != state.expires_at:
            self._current[listing_id] = state.expires_at
            heapq.heappush(self._heap, (state.expires_at, listing_id))

    def due(self, now: datetime) -> list[str]:
        found = []
        while self._heap and self._heap[0][0] <= now:
            expires_at, listing_id = heapq.heappop(self._heap)
            if self._current.get(listing_id) == expires_at:
                del self._current[listing_id]
                found.append(listing_id)
        return found

    def clear(self) -> None:
        self._heap.clear()
        self._current.clear()

    def __len__(self) -> int:
        return len(self._current)
