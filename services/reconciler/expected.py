"""What every agency's copy must hold, folded from the compacted `ledger` topic.

Per agency the reconciler keeps only a leaf (one integer) per listing, grouped by
digest bucket, and the incremental digest of those leaves: enough to compare with a
copy's digest and to narrow a mismatch. Each listing's state is kept as its wire
bytes (about half a kilobyte) and decoded only when a difference needs explaining
or repairing, so a million listings fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.core.copystore.probe import Leaf
from services.core.digest import DEFAULT_BUCKETS, Digest, bucket_of
from services.core.events import ListingState
from services.core.policy import Policy
from services.core.serde import decode, encode
from services.core.views import ViewRow, project


@dataclass(frozen=True)
class Known:
    """The latest state of one listing the reconciler has read, and since when it stands."""

    version: int
    status: str
    since: datetime
    raw: bytes


class ExpectedViews:
    """Expected leaves and digests of every agency's view, updated one listing state at a time."""

    def __init__(self, policy: Policy, agencies: Iterable[str], size: int = DEFAULT_BUCKETS) -> None:
        self.policy = policy
        self.size = size
        self._known: dict[str, Known] = {}
        self._digests = {agency: Digest(size) for agency in agencies}
        self._buckets: dict[str, list[dict[str, int]]] = {a: [{} for _ in range(size)] for a in self._digests}

    @property
    def agencies(self) -> list[str]:
        return sorted(self._digests)

    def update(self, state: ListingState, at: datetime, raw: bytes | None = None) -> bool:
        """Take a listing's new state; an older or repeated version (a re-read) changes nothing."""
        listing_id = state.envelope.listing_id
        old = self._known.get(listing_id)
        if old is not None and old.version >= state.envelope.version:
            return False
        self._known[listing_id] = Known(state.envelope.version, state.status, at, raw or encode(state))
        bucket = bucket_of(listing_id, self.size)
        for agency in self._digests:
            self._put(agency, listing_id, bucket, project(state, agency, self.policy))
        return True

    def _put(self, agency: str, listing_id: str, bucket: int, row: ViewRow | None) -> None:
        leaves, digest = self._buckets[agency][bucket], self._digests[agency]
        old = leaves.pop(listing_id, None)
        if old is not None:
            digest.remove(listing_id, old)
        if row is not None:
            leaves[listing_id] = Leaf.of(row).value(listing_id)
            digest.add(listing_id, leaves[listing_id])

    def known(self, listing_id: str) -> Known | None:
        return self._known.get(listing_id)

    def state(self, listing_id: str) -> ListingState | None:
        known = self._known.get(listing_id)
        if known is None:
            return None
        state = decode(known.raw, "ledger")
        assert isinstance(state, ListingState)
        return state

    def row(self, agency: str, listing_id: str) -> ViewRow | None:
        """The row `agency`'s copy must hold for the listing now (None: no row at all)."""
        return project(self.state(listing_id), agency, self.policy)

    def digest(self, agency: str) -> Digest:
        return self._digests[agency]

    def leaves(self, agency: str, bucket: int, size: int) -> dict[str, int]:
        """Expected leaf values in bucket `bucket` of a `size`-bucket split (a multiple of ours)."""
        if size % self.size:
            raise ValueError(f"a {size}-bucket split does not refine the {self.size} buckets")
        top = self._buckets[agency][bucket % self.size]
        if size == self.size:
            return dict(top)
        return {lid: value for lid, value in top.items() if bucket_of(lid, size) == bucket}

    def __len__(self) -> int:
        return len(self._known)
