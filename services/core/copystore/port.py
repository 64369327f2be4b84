"""The `CopyStore` port: one agency's copy of its view, whatever database holds it.

The copy sink writes through it, the reconciler and audit read through it, and one
behaviour suite (tests/unit/copies/test_copystore_behaviour.py) runs against every
adapter, so SQLite and PostgreSQL copies cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

from services.core.digest import Digest
from services.core.errors import AccordError
from services.core.events import ViewChanged
from services.core.views import ViewRow


class StoreError(AccordError):
    """The copy's database failed or holds something that is not a copy; the message says which."""


class CopyStore(Protocol):
    """One agency's copy: its rows, its incremental digest and the view-topic positions it reached."""

    agency: str

    def apply(self, change: ViewChanged, partition: int, offset: int, ack: bytes | None = None) -> bool:
        """Apply one view change, in one transaction with its position (partition -> offset + 1).

        Returns False, changing nothing, when that offset was already applied. Otherwise the
        change is applied unconditionally (a repair may re-send a version to fix an altered
        row). `ack`, if given, is kept in the same transaction until `acks_sent` clears it,
        so an acknowledgement is never lost to a crash between the write and its sending.
        """
        ...

    def skip(self, partition: int, offset: int, ack: bytes | None = None) -> bool:
        """Record a message the copy must not apply (undecodable, not for this agency) as consumed.

        Like `apply`: False, changing nothing, if that offset was already consumed; `ack` (the
        record of the refusal) is kept until sent, as for `apply`.
        """
        ...

    def delivered_version(self, listing_id: str) -> int:
        """The newest version of the listing the ledger delivered (0: none), deletes included.

        Kept apart from the rows, which a restore or a hand edit may change, so the sink can
        tell a reconciler's repair that the ledger has overtaken from one the copy needs.
        """
        ...

    def positions(self) -> dict[int, int]:
        """Partition -> next offset to consume."""
        ...

    def row(self, listing_id: str) -> ViewRow | None: ...

    def rows(self) -> Iterator[ViewRow]: ...

    def rows_for_subject(self, subject_ref: str) -> list[ViewRow]: ...

    def digest(self) -> Digest:
        """The bucket accumulators kept incrementally by `apply`: no row is read."""
        ...

    def rescan_digest(self) -> Digest:
        """The digest recomputed from the stored rows, so rows edited behind the sink's back show."""
        ...

    def bucket_leaves(self, bucket: int, buckets: int = 256) -> dict[str, tuple[int, str, str]]:
        """listing_id -> (version, status, row_hash), recomputed from the rows of one bucket."""
        ...

    def last_applied_at(self) -> datetime | None: ...

    def unsent_acks(self) -> list[tuple[int, int, bytes]]:
        """(partition, offset, ack) of every acknowledgement `apply` or `skip` kept, not yet cleared."""
        ...

    def acks_sent(self, sent: list[tuple[int, int]]) -> None:
        """Forget the acknowledgements at these (partition, offset): the broker confirmed them."""
        ...

    def close(self) -> None: ...
