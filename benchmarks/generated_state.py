"""N generated listings written straight into the publisher's book, the reconciler's snapshot and a
copy, for `bench_restart.py`: fast enough for ten million here, and the same rows as the services'.

What a restart with N listings meets is files holding N rows in the services' own schemas
(`LedgerBook`, `reconciler/kept.py`), so the rows are generated into them, not folded from a log:

- the rows that need no hash (`states`, `events`, `known`: listing `G-0000000`.. with the wire
  bytes of one real state) are produced by SQLite itself from a counter (a recursive CTE), one
  `INSERT .. SELECT` per table, without a Python object per row;
- the rows that do (each listing's spot, `digest.bucket_of`, and leaf, `digest.leaf`) are worked
  out by those functions, then written bucket by bucket, so the `leaves` and the copy's `rows`
  (whose keys begin with the bucket) grow at their end instead of at random places;
- each file is built with its journal and syncs off (a crash loses only the benchmark) in one
  transaction, then its journal is set back (WAL, which the services open it in).

The copy is a table of leaves (what `accord copy serve` computes from its rows) holding the same
listings, with `STALE` revoked there. `only` builds one bucket's listings alone (the search reads
no other). `acked` writes an acknowledgement of each of the first N listings into a snapshot.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.core.digest import DEFAULT_BUCKETS, FINEST_SPLIT, MODULUS, bucket_of, leaf
from services.core.snapshot import Snapshot
from services.core.topics import Topics
from services.publisher.state import LedgerBook
from services.reconciler.expected import LISTINGS
from services.reconciler.kept import SCHEMA, TABLES

AGENCY = "civil-aviation"
STALE = "G-0000007"
SINCE = "2026-01-01T00:00:00+00:00"
COPY_SCHEMA = """CREATE TABLE rows (bucket INTEGER, spot INTEGER, listing_id TEXT, version INTEGER,
    status TEXT, row_hash TEXT, PRIMARY KEY (bucket, listing_id)) WITHOUT ROWID"""
COUNTER = "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?) "
LISTING = "printf('G-%07d', i)"


def listing_id(i: int) -> str:
    """The i-th generated listing (fixed width: ids sort as their counters do, up to ten million)."""
    return f"G-{i:07}"


def row_hash(i: int) -> str:
    """The i-th listing's row hash, in the copy and in the expected view alike."""
    return f"{i:064x}"


def files(folder: Path, topics: Topics) -> tuple[Path, Path]:
    """Where the publisher (`LedgerBook.claim`) and the reconciler (`claim_snapshot`) look first."""
    name = topics.namespace.replace(".", "_")
    return (
        folder / "publisher" / f"{name}-court.0.sqlite3",
        folder / "reconciler" / f"{name}-expected.0.sqlite3",
    )


@contextmanager
def bulk(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection for building a file in one go: no journal, no sync, a big page cache; committed
    and its journal set back on the way out (WAL, as `Snapshot` made it)."""
    db = sqlite3.connect(path, isolation_level=None)
    (journal,) = db.execute("PRAGMA journal_mode").fetchone()
    db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;")
    db.execute("BEGIN")
    try:
        yield db
        db.execute("COMMIT")
        db.execute(f"PRAGMA journal_mode={journal}")
    finally:
        db.close()


def build(folder: Path, n: int, raw: bytes, cluster: str, topics: Topics, only: int | None = None) -> None:
    """The publisher's book, the reconciler's snapshot and the copy, N listings each, positions at 0."""
    book_path, expected_path = files(folder, topics)
    LedgerBook({}, book_path).close()  # each with its schema, as the services make it
    Snapshot(expected_path, SCHEMA, TABLES).close()
    with bulk(book_path) as book, bulk(expected_path) as expected, bulk(folder / "copy.sqlite3") as copy:
        copy.execute(COPY_SCHEMA)
        spots, members = _spots(n)
        sums = [0] * DEFAULT_BUCKETS
        for bucket in range(DEFAULT_BUCKETS) if only is None else [only]:
            sums[bucket] = _bucket(expected, copy, spots, members[bucket], bucket)
        if only is None:
            _counted(book, expected, n, raw)
        else:
            _listed(book, expected, [listing_id(i) for i in members[only]], raw)
        expected.executemany("INSERT INTO buckets VALUES (?, ?, ?, ?)",
                             [(AGENCY, b, f"{v:064x}", 0) for b, v in enumerate(sums)])  # fmt: skip
        for db in (book, expected):
            db.execute("INSERT INTO meta VALUES ('cluster', ?)", (cluster,))
            db.execute("INSERT INTO positions VALUES (?, 0, 0)", (topics.ledger,))
        known = n if only is None else len(members[only])
        expected.execute("INSERT INTO meta VALUES (?, ?)", (LISTINGS, str(known)))  # as `ExpectedViews` does


def _spots(n: int) -> tuple[array[int], list[array[int]]]:
    """Each listing's spot (the 32 bits `bucket_of` reads), and the listings of each bucket, in order."""
    spots, members = array("I"), [array("I") for _ in range(DEFAULT_BUCKETS)]
    for i in range(n):
        spot = bucket_of(listing_id(i), FINEST_SPLIT)
        spots.append(spot)
        members[spot % DEFAULT_BUCKETS].append(i)
    return spots, members


def _bucket(expected: sqlite3.Connection, copy: sqlite3.Connection, spots: array[int], members: array[int],
            bucket: int) -> int:  # fmt: skip
    """One bucket's expected leaves and copy rows (in key order); returns the bucket's sum."""
    leaves, rows, total = [], [], 0
    for i in members:
        lid, held = listing_id(i), row_hash(i)
        value = leaf(lid, 1, "active", held)
        total += value
        leaves.append((AGENCY, bucket, lid, spots[i], f"{value:064x}"))
        rows.append((bucket, spots[i], lid, "revoked" if lid == STALE else "active", held))
    expected.executemany("INSERT INTO leaves VALUES (?, ?, ?, ?, ?)", leaves)
    copy.executemany("INSERT INTO rows VALUES (?, ?, ?, 1, ?, ?)", rows)
    return total % MODULUS


def _counted(book: sqlite3.Connection, expected: sqlite3.Connection, n: int, raw: bytes) -> None:
    """The rows of listings 0..N-1 that hold no hash, generated by SQLite from a counter."""
    book.execute(f"{COUNTER} INSERT INTO states SELECT {LISTING}, 1, 1, ? FROM c", (n, raw))
    book.execute(f"{COUNTER} INSERT INTO events SELECT 'e-' || {LISTING}, {LISTING}, 1 FROM c", (n,))
    expected.execute(f"{COUNTER} INSERT INTO known SELECT {LISTING}, 1, 'active', ?, ?, 0 FROM c",
                     (n, SINCE, raw))  # fmt: skip


def _listed(book: sqlite3.Connection, expected: sqlite3.Connection, ids: list[str], raw: bytes) -> None:
    """The same rows of the listings `ids` only."""
    book.executemany("INSERT INTO states VALUES (?, 1, 1, ?)", [(lid, raw) for lid in ids])
    book.executemany("INSERT INTO events VALUES (?, ?, 1)", [(f"e-{lid}", lid) for lid in ids])
    expected.executemany("INSERT INTO known VALUES (?, 1, 'active', ?, ?, 0)",
                         [(lid, SINCE, raw) for lid in ids])  # fmt: skip


def acked(db: sqlite3.Connection, agency: str, n: int, applied_at: int) -> None:
    """An acknowledgement of version 1 of each of listings 0..N-1 by `agency`'s copy, into a
    snapshot (what reading N acks from `copies.applied` leaves in `acks`)."""
    db.execute(f"{COUNTER} INSERT OR REPLACE INTO acks SELECT ?, {LISTING}, 1, 1, 'upsert', ?, 0, 0 FROM c",
               (n, agency, applied_at))  # fmt: skip
