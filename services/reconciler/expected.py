"""What every agency's copy must hold, folded from the compacted `ledger` topic.

Per agency the reconciler keeps only a leaf (one integer) per listing, grouped by
digest bucket, and the incremental digest of those leaves: enough to compare with a
copy's digest and to narrow a mismatch. Each listing's state is kept as its wire
bytes (about half a kilobyte) and decoded only when a difference needs explaining
or repairing. All of it is on disk (issue 14: ten million listings), committed with
the `ledger` positions it reflects, so a restart reads only the ledger's tail.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from services.core.copystore.probe import Leaf
from services.core.digest import DEFAULT_BUCKETS, FINEST_SPLIT, MODULUS, Digest, bucket_of
from services.core.events import ListingState
from services.core.policy import Policy
from services.core.serde import decode, encode
from services.core.snapshot import Partition, Snapshot
from services.core.views import ViewRow, project
from services.reconciler.objections import awaits_outcome


@dataclass(frozen=True)
class Known:
    """The latest state of one listing the reconciler has read, and since when it stands."""

    version: int
    status: str
    since: datetime
    raw: bytes


SCHEMA = """
CREATE TABLE IF NOT EXISTS known (listing_id TEXT PRIMARY KEY, version INTEGER NOT NULL,
    status TEXT NOT NULL, since TEXT NOT NULL, raw BLOB NOT NULL, objected INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS known_objected ON known (objected) WHERE objected = 1;
CREATE TABLE IF NOT EXISTS leaves (agency TEXT NOT NULL, bucket INTEGER NOT NULL, listing_id TEXT NOT NULL,
    spot INTEGER NOT NULL, leaf TEXT NOT NULL, PRIMARY KEY (agency, bucket, listing_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS buckets (agency TEXT NOT NULL, bucket INTEGER NOT NULL, sum TEXT NOT NULL,
    rows INTEGER NOT NULL, PRIMARY KEY (agency, bucket)) WITHOUT ROWID;
"""


TABLES = ("known", "leaves", "buckets")
LISTINGS = "listings"  # the `meta` row holding how many rows `known` has, committed with them


class ExpectedViews:
    """Expected leaves and digests of every agency's view, updated one listing state at a time.

    Kept in a `Snapshot` (core/snapshot.py: one SQLite file, or `":memory:"`): per listing its
    latest state, and per agency and bucket its leaf; only each agency's bucket sums (its
    `Digest`, `size` integers) are in memory, written with the rows at each `commit`. A
    listing's `spot` (the 32 bits of its hash `bucket_of` reads) lets a finer split of a
    bucket be answered by the database alone."""

    def __init__(
        self,
        policy: Policy,
        agencies: Iterable[str],
        size: int = DEFAULT_BUCKETS,
        snapshot: Snapshot | None = None,
    ) -> None:
        self.policy = policy
        self.size = size
        self.snapshot = snapshot or Snapshot(":memory:", SCHEMA, TABLES)
        self._db = self.snapshot.db
        self._digests = {agency: Digest(size) for agency in agencies}
        self._rows: dict[tuple[str, int], int] = {}  # (agency, bucket) -> leaves in it
        self._dirty: set[tuple[str, int]] = set()  # buckets changed since the last commit
        self._listings = 0  # rows of `known`, kept as they come: a count(*) reads them all (10 M)
        self.reload()

    def reload(self) -> None:
        """The bucket sums as last committed (none: an empty snapshot, or one `resume_from` emptied)."""
        self._digests = {agency: Digest(self.size) for agency in self._digests}
        self._rows, self._dirty = {}, set()
        counted = self.snapshot.meta(LISTINGS)
        self._listings = int(counted) if counted is not None else self._count()
        for agency, bucket, total, rows in self._db.execute("SELECT agency, bucket, sum, rows FROM buckets"):
            digest = self._digests.get(agency)
            if digest is not None and bucket < self.size:
                digest.buckets[bucket] = int(total, 16)
                digest.rows += rows
                self._rows[(agency, bucket)] = rows

    def commit(self, positions: Mapping[Partition, int]) -> None:
        """The rows taken since the last commit, their bucket sums, and the ledger positions they reflect."""
        self._db.executemany("INSERT OR REPLACE INTO buckets VALUES (?, ?, ?, ?)",
                             [(a, b, f"{self._digests[a].buckets[b]:064x}", self._rows.get((a, b), 0))
                              for a, b in self._dirty])  # fmt: skip
        self._dirty.clear()
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (LISTINGS, str(self._listings)))
        self.snapshot.commit(positions)

    @property
    def agencies(self) -> list[str]:
        return sorted(self._digests)

    def update(self, state: ListingState, at: datetime, raw: bytes | None = None) -> bool:
        """Take a listing's new state; an older or repeated version (a re-read) changes nothing."""
        listing_id = state.envelope.listing_id
        old = self._db.execute("SELECT version FROM known WHERE listing_id = ?", (listing_id,)).fetchone()
        if old is not None and old[0] >= state.envelope.version:
            return False
        self._listings += old is None
        self._db.execute("INSERT OR REPLACE INTO known VALUES (?, ?, ?, ?, ?, ?)",
                         (listing_id, state.envelope.version, state.status, at.isoformat(),
                          raw or encode(state), awaits_outcome(state)))  # fmt: skip
        spot = spot_of(listing_id)
        for agency in self._digests:
            self._put(agency, listing_id, spot, project(state, agency, self.policy))
        return True

    def _put(self, agency: str, listing_id: str, spot: int, row: ViewRow | None) -> None:
        digest, bucket = self._digests[agency], spot % self.size
        where = (agency, bucket, listing_id)
        old = self._db.execute(
            "SELECT leaf FROM leaves WHERE agency = ? AND bucket = ? AND listing_id = ?", where
        ).fetchone()
        count = self._rows.get((agency, bucket), 0)
        if old is not None:
            digest.remove(listing_id, int(old[0], 16))
            self._db.execute("DELETE FROM leaves WHERE agency = ? AND bucket = ? AND listing_id = ?", where)
            count -= 1
        if row is not None:
            value = Leaf.of(row).value(listing_id)
            digest.add(listing_id, value)
            self._db.execute("INSERT INTO leaves VALUES (?, ?, ?, ?, ?)", (*where, spot, f"{value:064x}"))
            count += 1
        self._rows[(agency, bucket)] = count
        self._dirty.add((agency, bucket))

    def known(self, listing_id: str) -> Known | None:
        row = self._db.execute(
            "SELECT version, status, since, raw FROM known WHERE listing_id = ?", (listing_id,)
        ).fetchone()
        return None if row is None else Known(row[0], row[1], datetime.fromisoformat(row[2]), row[3])

    def state(self, listing_id: str) -> ListingState | None:
        known = self.known(listing_id)
        if known is None:
            return None
        state = decode(known.raw, "ledger")
        assert isinstance(state, ListingState)
        return state

    def objected(self) -> Iterator[ListingState]:
        """Every listing with an objection awaiting its outcome (the deadlines a restart must keep)."""
        for (raw,) in self._db.execute("SELECT raw FROM known WHERE objected = 1").fetchall():
            state = decode(raw, "ledger")
            assert isinstance(state, ListingState)
            yield state

    def row(self, agency: str, listing_id: str) -> ViewRow | None:
        """The row `agency`'s copy must hold for the listing now (None: no row at all)."""
        return project(self.state(listing_id), agency, self.policy)

    def digest(self, agency: str) -> Digest:
        return self._digests[agency]

    def leaves(self, agency: str, bucket: int, size: int) -> dict[str, int]:
        """Expected leaf values in bucket `bucket` of a `size`-bucket split (a multiple of ours)."""
        if size % self.size:
            raise ValueError(f"a {size}-bucket split does not refine the {self.size} buckets")
        found = self._db.execute(
            "SELECT listing_id, leaf FROM leaves WHERE agency = ? AND bucket = ? AND spot % ? = ?",
            (agency, bucket % self.size, size, bucket),
        )
        return {lid: int(leaf, 16) for lid, leaf in found}

    def count(self, agency: str, bucket: int, size: int) -> int:
        """How many expected leaves bucket `bucket` of a `size`-bucket split holds."""
        query = "SELECT count(*) FROM leaves WHERE agency = ? AND bucket = ? AND spot % ? = ?"
        return int(self._db.execute(query, (agency, bucket % self.size, size, bucket)).fetchone()[0])

    def split(self, agency: str, bucket: int, size: int, fanout: int) -> list[str]:
        """The hashes of bucket `bucket`'s `fanout` sub-buckets (as `split_hashes` gives them), from
        the stored spots: no listing id is hashed again."""
        sums = [0] * fanout
        for spot, value in self._db.execute(
            "SELECT spot, leaf FROM leaves WHERE agency = ? AND bucket = ? AND spot % ? = ?",
            (agency, bucket % self.size, size, bucket),
        ):
            j = spot % (size * fanout) // size
            sums[j] = (sums[j] + int(value, 16)) % MODULUS
        return [f"{total:064x}" for total in sums]

    def __len__(self) -> int:
        """Listings known, without reading them (the progress line asks every minute)."""
        return self._listings

    def _count(self) -> int:
        """Once, for a snapshot written before the count was kept with it (or just emptied)."""
        return int(self._db.execute("SELECT count(*) FROM known").fetchone()[0])

    def close(self) -> None:
        self.snapshot.close()


def spot_of(listing_id: str) -> int:
    """The 32 bits of the listing id's hash that `bucket_of` reads: its bucket under any split."""
    return bucket_of(listing_id, FINEST_SPLIT)
