"""Re-verifying a copy's caches one bucket at a time, inside the caller's transaction.

The running digest is only as true as the caches `apply` keeps (each row's bucket and leaf,
each bucket's accumulator); a hand edit bypasses them. A step reads the rows stored under
one bucket (through its index), recomputes every leaf from the columns, moves a row whose
listing id falls in another bucket to that bucket (then settles that one too), and rewrites
what disagrees. Stepping through every bucket, and the rows stored under none, is a full
`reindex`; the sink takes a few steps at a time, within a budget of rows per minute.
"""

from __future__ import annotations

from typing import Any

from services.core.copystore import columns
from services.core.copystore.columns import ROW_COLUMNS, Cursor, hex_or_none
from services.core.copystore.port import Reindexed
from services.core.digest import MODULUS, bucket_of, leaf

SELECT = f"SELECT {ROW_COLUMNS}, bucket, leaf FROM copy_rows"


def verify(cur: Cursor, size: int, bucket: int | None) -> Reindexed:
    """One step: `bucket` (None: rows stored under no bucket or one outside the split)."""
    if bucket is None:
        cur.execute(f"{SELECT} WHERE bucket IS NULL OR bucket < 0 OR bucket >= ?", (size,))
        strays = cur.fetchall()
        fixed = [_recache(cur, size, values) for values in strays]
        pending, read = {bucket_of(lid, size) for lid in fixed}, len(strays)
    else:
        fixed, pending, read = [], {bucket}, 0
    wrong, done = [], set()
    while pending:
        each = pending.pop()
        done.add(each)
        moved, releafed, settled, seen = _settle(cur, size, each)
        fixed += releafed + moved
        read += seen
        wrong += [] if settled else [each]
        pending |= {bucket_of(lid, size) for lid in moved} - done
    return Reindexed(sorted(set(fixed)), sorted(wrong), read)


def _settle(cur: Cursor, size: int, bucket: int) -> tuple[list[str], list[str], bool, int]:
    """Rows moved out, rows whose leaf was rewritten, whether the accumulator was right, rows read."""
    cur.execute(f"{SELECT} WHERE bucket = ?", (bucket,))
    stored = cur.fetchall()
    moved, releafed, total, count = [], [], 0, 0
    for values in stored:
        lid = str(values[0])
        if bucket_of(lid, size) != bucket:
            moved.append(_recache(cur, size, values))
            continue
        value = _leaf(values)
        if hex_or_none(values[-1]) != value:
            releafed.append(_recache(cur, size, values))
        total, count = (total + value) % MODULUS, count + 1
    cur.execute("SELECT accumulator, rows FROM copy_buckets WHERE bucket = ?", (bucket,))
    found = cur.fetchone()
    held = (int(found[0], 16), int(found[1])) if found else (0, 0)
    if held != (total, count):
        set_bucket(cur, bucket, total, count)
    return moved, releafed, held == (total, count), len(stored)


def _leaf(values: tuple[Any, ...]) -> int:
    """The leaf of a stored row, recomputed from its columns whatever they hold (a version edited into
    text that is no number gives a leaf no intact row has: the row differs, the step goes on)."""
    raw = columns.raw_row(tuple(values[:-2]))
    version = raw["version"] if isinstance(raw["version"], int) else -1
    return leaf(str(raw["listing_id"]), version, str(raw["status"]), columns.row_hash(raw))


def _recache(cur: Cursor, size: int, values: tuple[Any, ...]) -> str:
    lid = str(values[0])
    cur.execute(
        "UPDATE copy_rows SET bucket = ?, leaf = ? WHERE listing_id = ?",
        (bucket_of(lid, size), f"{_leaf(values):064x}", lid),
    )
    return lid


def set_bucket(cur: Cursor, bucket: int, accumulator: int, rows: int) -> None:
    cur.execute(
        "INSERT INTO copy_buckets (bucket, accumulator, rows) VALUES (?, ?, ?) ON CONFLICT (bucket) "
        "DO UPDATE SET accumulator = excluded.accumulator, rows = excluded.rows",
        (bucket, f"{accumulator:064x}", rows),
    )
