"""A bucketed, incremental hash tree over a copy: root -> buckets -> leaves (one per listing).

Each bucket is the sum, modulo 2**256, of its leaves' hashes: adding or removing a
row updates one bucket in O(1), in any order, without rescanning the copy. Two
copies with equal buckets hold equal rows; unequal buckets name where to look.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_BUCKETS = 256
MODULUS = 1 << 256
FINEST_SPLIT = 1 << 32  # bucket_of reads 32 bits of the hash: no split is finer than this
EMPTY = 0


def bucket_of(listing_id: str, buckets: int = DEFAULT_BUCKETS) -> int:
    """Which bucket a listing falls in: stable across processes and machines."""
    digest = hashlib.sha256(listing_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % buckets


def leaf(listing_id: str, version: int, status: str, row_hash: str) -> int:
    """A listing's leaf: changes when its version, its status or any field of its row does."""
    material = f"{listing_id}\x1f{version}\x1f{status}\x1f{row_hash}".encode()
    return int.from_bytes(hashlib.sha256(material).digest(), "big")


@dataclass
class Digest:
    """Bucket accumulators of one copy (or of one expected view)."""

    size: int = DEFAULT_BUCKETS
    buckets: list[int] = field(default_factory=list)
    rows: int = 0

    def __post_init__(self) -> None:
        if not self.buckets:
            self.buckets = [EMPTY] * self.size

    def add(self, listing_id: str, leaf_value: int) -> None:
        index = bucket_of(listing_id, self.size)
        self.buckets[index] = (self.buckets[index] + leaf_value) % MODULUS
        self.rows += 1

    def remove(self, listing_id: str, leaf_value: int) -> None:
        index = bucket_of(listing_id, self.size)
        self.buckets[index] = (self.buckets[index] - leaf_value) % MODULUS
        self.rows -= 1

    def hex_buckets(self) -> list[str]:
        return [f"{b:064x}" for b in self.buckets]

    def root(self) -> str:
        return root_of(self.hex_buckets())

    def differing_buckets(self, other_hex: list[str]) -> list[int]:
        """Indexes of buckets whose hash differs from `other_hex` (another digest's buckets)."""
        if len(other_hex) != self.size:
            return list(range(self.size))
        return [i for i, (a, b) in enumerate(zip(self.hex_buckets(), other_hex, strict=True)) if a != b]

    @classmethod
    def of(cls, leaves: Iterable[tuple[str, int]], size: int = DEFAULT_BUCKETS) -> Digest:
        digest = cls(size)
        for listing_id, leaf_value in leaves:
            digest.add(listing_id, leaf_value)
        return digest


def root_of(hex_buckets: list[str]) -> str:
    return hashlib.sha256("".join(hex_buckets).encode()).hexdigest()
