"""The port through which the reconciler questions a copy: hashes and leaves, never whole rows.

`CopyProbe` is what any copy can answer cheaply next to its own database; `StoreProbe`
answers it from a `CopyStore` opened by URL (the copy's SQLite file or PostgreSQL
database), and an HTTP adapter served beside the copy could answer the same calls.
`MeteredProbe` counts the bytes each answer would take on the wire, so the
reconciler can report what narrowing a mismatch cost against the copy's size.
"""

from __future__ import annotations

import json
from typing import Protocol, TypeVar

from services.core.copystore import CopyStore, open_store
from services.core.digest import DEFAULT_BUCKETS, bucket_of
from services.reconciler.model import Leaf, split_hashes

T = TypeVar("T")


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

    def close(self) -> None:
        self.store.close()


def wire_size(answer: object) -> int:
    """Bytes of `answer` as compact JSON: what an HTTP probe would send."""
    return len(json.dumps(answer, separators=(",", ":")))


class MeteredProbe:
    """A probe that adds up the bytes of every answer it relays."""

    def __init__(self, probe: CopyProbe) -> None:
        self.probe = probe
        self.bytes = 0

    def digest(self) -> list[str]:
        return self._count(self.probe.digest())

    def sub_digest(self, bucket: int, size: int, fanout: int) -> list[str]:
        return self._count(self.probe.sub_digest(bucket, size, fanout))

    def leaves(self, bucket: int, size: int) -> dict[str, Leaf]:
        return self._count(self.probe.leaves(bucket, size))

    def positions(self) -> dict[int, int]:
        return self._count(self.probe.positions())

    def _count(self, answer: T) -> T:
        self.bytes += wire_size(answer)
        return answer
