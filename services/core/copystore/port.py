"""The `CopyStore` port: one agency's copy of its view, whatever database holds it.

The copy sink writes through it, the reconciler and audit read through it, and one
behaviour suite (tests/unit/copies/test_copystore_behaviour.py) runs against every
adapter, so SQLite and PostgreSQL copies cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple, Protocol

from services.core.digest import Digest
from services.core.errors import AccordError
from services.core.events import ViewChanged
from services.core.topics import RECONCILER
from services.core.views import ViewRow


class StoreError(AccordError):
    """The copy's database failed or holds something that is not a copy; the message says which."""


class Applied(StrEnum):
    """What `CopyStore.apply` did with one view change."""

    APPLIED = "applied"  # the row now holds the change
    REPEATED = "repeated"  # that offset, or that very version from the ledger, was already taken
    OVERTAKEN = "overtaken"  # older than a version the copy already knows: passed over, position kept
    SKIPPED = "skipped"  # a `Refusal`: consumed, not applied


class Holding(NamedTuple):
    """What the copy holds of one listing after `apply`: the `row_hash()` of its row ("": no row), at
    a version. The hash is all an acknowledgement says of the row, so no row model is built for it."""

    version: int
    row_hash: str = ""


# Builds the acknowledgement kept with the change, from what the copy holds once the change is taken.
Acknowledge = Callable[[Holding], bytes]


@dataclass(frozen=True)
class Change:
    """One view change of a batch, read at partition/offset; `ack` as for `CopyStore.apply`."""

    change: ViewChanged
    partition: int
    offset: int
    ack: Acknowledge | None = None


@dataclass(frozen=True)
class Refusal:
    """A view message of a batch the copy must not apply, consumed with the record of why (`ack`)."""

    partition: int
    offset: int
    ack: bytes | None = None


def judge(change: ViewChanged, known: int) -> Applied:
    """Never older than what the copy knows; the ledger's same version once, a repair's again."""
    version = change.envelope.version
    if version < known:
        return Applied.OVERTAKEN
    if version == known and change.envelope.agency != RECONCILER:
        return Applied.REPEATED
    return Applied.APPLIED


@dataclass(frozen=True)
class Damaged:
    """A row of the copy that no longer reads as a view row (edited by hand, corrupted)."""

    listing_id: str
    reason: str


@dataclass(frozen=True)
class Reindexed:
    """What `reindex` found wrong in the copy's caches (and corrected)."""

    rows: list[str] = field(default_factory=list)  # rows whose stored bucket or leaf was not their own
    buckets: list[int] = field(default_factory=list)  # buckets whose running accumulator disagreed
    read: int = 0  # rows read to find out: the cost


class CopyStore(Protocol):
    """One agency's copy: its rows, its incremental digest and the view-topic positions it reached."""

    agency: str

    def apply(
        self, change: ViewChanged, partition: int, offset: int, ack: Acknowledge | None = None
    ) -> Applied:
        """Take one view change, in one transaction with its position (partition -> offset + 1).

        REPEATED, changing nothing, when that offset was already taken, or when the ledger
        delivers a version the copy already has (a re-emission: taken once, acknowledged once).
        OVERTAKEN when the change is older than the newest version the copy was delivered (a
        repair planned before the ledger's later word, a replayed old change): the position
        advances and nothing else changes. Otherwise APPLIED (a repair may re-send the current
        version to fix an altered row). `ack`, if given, is called with what the copy then
        holds and its result kept in the same transaction until `acks_sent` clears it, so an
        acknowledgement is never lost to a crash between the write and its sending.
        """
        ...

    def take(self, batch: Sequence[Change | Refusal]) -> list[Applied]:
        """Take a batch in ONE transaction, in order, with its positions and acknowledgements.

        Each outcome is the one `apply` (or, for a `Refusal`, `skip`: SKIPPED, or REPEATED
        when already consumed) would give message by message; a failure writes nothing.
        """
        ...

    def skip(self, partition: int, offset: int, ack: bytes | None = None) -> bool:
        """Record a message the copy must not apply (undecodable, not for this agency) as consumed.

        Like `apply`: False, changing nothing, if that offset was already consumed; `ack` (the
        record of the refusal) is kept until sent, as for `apply`.
        """
        ...

    def delivered_version(self, listing_id: str) -> int:
        """The newest version of the listing delivered to the copy (0: none), deletes included.

        Kept apart from the rows, which a restore or a hand edit may change, so `apply` can
        tell a repair the ledger has overtaken from one the copy needs. A repair's version is
        the ledger version it was planned at, so it counts too.
        """
        ...

    def positions(self) -> dict[int, int]:
        """Partition -> next offset to consume."""
        ...

    def row(self, listing_id: str) -> ViewRow | None: ...

    def rows(self) -> Iterator[ViewRow]: ...

    def rows_for_subject(self, subject_ref: str) -> tuple[list[ViewRow], list[Damaged]]:
        """The subject's rows, and those of its rows that no longer read as view rows."""
        ...

    def record_damage(self, damaged: list[Damaged], at: datetime) -> None:
        """Remember rows a reader could not read, for the reconciler to report (`damage`)."""
        ...

    def damage(self) -> dict[str, tuple[str, datetime]]:
        """listing_id -> (reason, first seen) of every damaged row recorded and still damaged."""
        ...

    def digest(self) -> Digest:
        """The bucket accumulators kept incrementally by `apply`: no row is read."""
        ...

    def rescan_digest(self) -> Digest:
        """The digest recomputed from the stored rows, so rows edited behind the sink's back show."""
        ...

    def bucket_leaves(self, bucket: int, buckets: int = 256) -> dict[str, tuple[int, str, str]]:
        """listing_id -> (version, status, row_hash), recomputed from the rows of one bucket.

        The bucket is the one the listing id falls in; the stored `bucket` column only finds
        rows fast, so a row stored under another bucket is left out here (see `misplaced`).
        """
        ...

    def misplaced(self) -> dict[str, tuple[int, str, str]]:
        """Leaves of the rows whose stored bucket is not the one their listing id falls in.

        Rows inserted by hand with a copied, wrong or no bucket: a full read of ids, asked
        for only when a bucket's leaves do not add up to its hash.
        """
        ...

    def restore(self, rows: Iterable[ViewRow]) -> None:
        """Replace every row with `rows` (a backup: what `rows()` read earlier), in one transaction.

        The digest is recomputed from the restored rows; positions and delivered versions stay
        as they are, as when a DBA restores only the listing tables: the sink then does not
        re-read what the backup lost, and only reconciliation finds the difference.
        """
        ...

    def verify(self, bucket: int | None) -> Reindexed:
        """Re-verify one bucket from its rows: the rows stored under it (moving those whose
        listing id falls elsewhere to their own bucket, which is verified too), their leaves,
        and its accumulator; None: the rows stored under no bucket or one outside the split.

        A bounded step (one bucket's rows) of the rolling verification that lets the running
        digest show hand edits without a full rescan.
        """
        ...

    def reindex(self) -> Reindexed:
        """`verify` every bucket: the running digest then agrees with every row again."""
        ...

    def last_applied_at(self) -> datetime | None: ...

    def unsent_acks(self) -> list[tuple[int, int, bytes]]:
        """(partition, offset, ack) of every acknowledgement `apply` or `skip` kept, not yet cleared."""
        ...

    def acks_sent(self, sent: list[tuple[int, int]]) -> None:
        """Forget the acknowledgements at these (partition, offset): the broker confirmed them."""
        ...

    def close(self) -> None: ...
