"""The questions a copy answers about itself: hashes and leaves of its rows, never the rows.

The reconciler narrows a digest mismatch to single listings through `CopyProbe`.
`StoreProbe` answers from the copy's database; the copy's HTTP server (`accord copy
serve`) answers the same questions beside the agency's database, so the reconciler
needs no credentials for it. Both sides live here, in core, because the copies and
the reconciler are services that may not import each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple, Protocol

from services.core.copystore import CopyStore, open_store
from services.core.digest import DEFAULT_BUCKETS, MODULUS, bucket_of, leaf
from services.core.views import ViewRow


class Leaf(NamedTuple):
    """One listing as a copy's digest sees it."""

    version: int
    status: str
    row_hash: str

    def value(self, listing_id: str) -> int:
        return leaf(listing_id, self.version, self.status, self.row_hash)

    @classmethod
    def of(cls, row: ViewRow) -> Leaf:
        return cls(row.version, row.status, row.row_hash())


class Damage(NamedTuple):
    """A row a reader of the copy could not read, and when that was first seen."""

    reason: str
    seen_at: datetime


def split_hashes(values: Mapping[str, int], bucket: int, size: int, fanout: int) -> list[str]:
    """Hashes of the `fanout` sub-buckets of `bucket`: its leaves regrouped by a finer split.

    Sub-bucket j of bucket b (in a `size` split) is bucket b + j*size of the `size*fanout`
    split, because `bucket_of` takes the same hash modulo both sizes.
    """
    sums = [0] * fanout
    for listing_id, value in values.items():
        j = bucket_of(listing_id, size * fanout) // size
        sums[j] = (sums[j] + value) % MODULUS
    return [f"{s:064x}" for s in sums]


class CopyProbe(Protocol):
    """Questions one agency's copy answers about itself."""

    def digest(self) -> list[str]:
        """Bucket hashes recomputed from the rows themselves (catches edits behind the sink's back)."""
        ...

    def sub_digest(self, bucket: int, size: int, fanout: int) -> list[str]:
        """Hashes of the `fanout` sub-buckets of `bucket` in a `size`-bucket split."""
        ...

    def leaves(self, bucket: int, size: int) -> dict[str, Leaf]:
        """The leaves of the rows in one bucket of a `size`-bucket split."""
        ...

    def positions(self) -> dict[int, int]:
        """Next offset to apply, per partition of the copy's view topic."""
        ...

    def misplaced(self) -> dict[str, Leaf]:
        """Leaves of the rows stored under a bucket their listing id does not fall in."""
        ...

    def damaged(self) -> dict[str, Damage]:
        """Rows a front-line check could not read, still unreadable."""
        ...


class StoreProbe:
    """Answers `CopyProbe` from the copy's own database."""

    def __init__(self, store: CopyStore) -> None:
        self.store = store

    @classmethod
    def open(cls, url: str, agency: str) -> StoreProbe:
        return cls(open_store(url, agency))

    def digest(self) -> list[str]:
        return self.store.rescan_digest().hex_buckets()

    def sub_digest(self, bucket: int, size: int, fanout: int) -> list[str]:
        values = {lid: leaf.value(lid) for lid, leaf in self.leaves(bucket, size).items()}
        return split_hashes(values, bucket, size, fanout)

    def leaves(self, bucket: int, size: int) -> dict[str, Leaf]:
        """Read the store's own (indexed) bucket, then keep the sub-bucket asked for, if finer."""
        if size % DEFAULT_BUCKETS:
            raise ValueError(f"a {size}-bucket split does not refine the copy's {DEFAULT_BUCKETS} buckets")
        found = self.store.bucket_leaves(bucket % DEFAULT_BUCKETS, DEFAULT_BUCKETS)
        if size != DEFAULT_BUCKETS:
            found = {lid: answer for lid, answer in found.items() if bucket_of(lid, size) == bucket}
        return {lid: Leaf(*answer) for lid, answer in found.items()}

    def positions(self) -> dict[int, int]:
        return self.store.positions()

    def misplaced(self) -> dict[str, Leaf]:
        return {lid: Leaf(*answer) for lid, answer in self.store.misplaced().items()}

    def damaged(self) -> dict[str, Damage]:
        return {lid: Damage(*seen) for lid, seen in self.store.damage().items()}

    def close(self) -> None:
        self.store.close()
