"""The copy's tables and statements, shared by the SQLite and PostgreSQL adapters.

Both databases speak this SQL (`?` placeholders are rewritten by the PostgreSQL
adapter). An adapter supplies only a connection, a write transaction, a read and its
own error translation; everything a copy means lives here once.

Tables: `copy_rows` (one row per listing, exactly the `ViewRow` fields, plus two caches:
the bucket it falls in, to find a bucket's rows fast, and the leaf `apply` added for it),
`copy_buckets` (the digest's accumulators, hex), `copy_versions` (newest version delivered
per listing), `copy_positions` (next offset per view-topic partition), `copy_outbox`
(acknowledgements not yet confirmed by the broker), `copy_damage` (rows a reader could not
read) and `copy_meta`. Where a row belongs is always computed from its listing id; the
stored bucket is a cache that `misplaced` and `reindex` verify.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from services.core.copystore import columns
from services.core.copystore.batch import BatchWriter
from services.core.copystore.columns import ROW_COLUMNS, Cursor
from services.core.copystore.port import Acknowledge, Applied, Change, Damaged, Refusal, Reindexed, StoreError
from services.core.copystore.verify import set_bucket, verify
from services.core.digest import DEFAULT_BUCKETS, MODULUS, Digest, bucket_of, leaf
from services.core.errors import ConfigurationError, ContractError
from services.core.events import ViewChanged
from services.core.views import LIVE, ViewRow

SCHEMA_VERSION = "1"


def schema(bytes_type: str) -> list[str]:
    """DDL of a copy; only the type of raw bytes differs between the databases."""
    return [
        "CREATE TABLE IF NOT EXISTS copy_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS copy_rows (
            listing_id TEXT PRIMARY KEY, version BIGINT NOT NULL, status TEXT NOT NULL,
            subject_ref TEXT NOT NULL, measures TEXT NOT NULL, fields TEXT NOT NULL,
            effective_from TEXT NOT NULL, expires_at TEXT NOT NULL, exemptions TEXT NOT NULL,
            bucket INTEGER, leaf TEXT)""",
        "CREATE INDEX IF NOT EXISTS copy_rows_bucket ON copy_rows (bucket)",
        "CREATE INDEX IF NOT EXISTS copy_rows_subject ON copy_rows (subject_ref)",
        """CREATE TABLE IF NOT EXISTS copy_buckets (
            bucket INTEGER PRIMARY KEY, accumulator TEXT NOT NULL, rows BIGINT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS copy_versions (
            listing_id TEXT PRIMARY KEY, version BIGINT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS copy_positions (
            view_partition INTEGER PRIMARY KEY, next_offset BIGINT NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS copy_outbox (
            view_partition INTEGER NOT NULL, view_offset BIGINT NOT NULL, ack {bytes_type} NOT NULL,
            PRIMARY KEY (view_partition, view_offset))""",
        """CREATE TABLE IF NOT EXISTS copy_damage (
            listing_id TEXT PRIMARY KEY, reason TEXT NOT NULL, seen_at TEXT NOT NULL)""",
    ]


class SqlCopyStore:
    """A copy in a SQL database. Adapters implement `_write`, `_read` and `_close`."""

    def __init__(self, agency: str) -> None:
        self.agency = agency
        self.size = DEFAULT_BUCKETS
        self._lock = threading.Lock()  # one connection, possibly shared by an HTTP server's threads
        self.parallel_reads = False  # True: `_read` uses a connection of the calling thread's own

    # --- adapter hooks ---------------------------------------------------------------

    def _write(self) -> AbstractContextManager[Cursor]:
        """A cursor inside one write transaction, committed on exit, rolled back on error."""
        raise NotImplementedError

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    # --- set-up ----------------------------------------------------------------------

    def _init(self, ddl: list[str]) -> None:
        """Create the tables if missing and bind the store to its agency (refusing another's)."""
        try:
            self._bind(ddl)
        except BaseException:
            self._close()
            raise

    def _bind(self, ddl: list[str]) -> None:
        with self._lock, self._write() as cur:
            for statement in ddl:
                cur.execute(statement)
            cur.execute("SELECT value FROM copy_meta WHERE name = 'agency'")
            found = cur.fetchone()
            if found is None:
                cur.execute("INSERT INTO copy_meta (name, value) VALUES ('agency', ?)", (self.agency,))
                cur.execute("INSERT INTO copy_meta (name, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif found[0] != self.agency:
                raise ConfigurationError(
                    f"this database holds the copy of {found[0]}, not of {self.agency}: check --store"
                )

    # --- writes ----------------------------------------------------------------------

    def take(self, batch: Sequence[Change | Refusal]) -> list[Applied]:
        for item in batch:
            if isinstance(item, Change):
                self._admissible(item)
        with self._lock, self._write() as cur:
            return BatchWriter(cur, self.size).take(batch)

    def _admissible(self, item: Change) -> None:
        """A change for another agency, or an upsert of a row no copy may hold, is a caller's bug: the
        sink refuses both before (`messages.fault`), with a record of why."""
        change, where = item.change, f"(partition {item.partition}, offset {item.offset})"
        if change.view_agency != self.agency:
            raise ContractError(
                f"a view change for {change.view_agency} reached the copy of {self.agency} {where}"
            )
        if change.op == "upsert" and change.status not in LIVE:
            raise ContractError(
                f"an upsert with status {change.status!r} reached the copy of {self.agency} {where}"
            )

    def apply(
        self, change: ViewChanged, partition: int, offset: int, ack: Acknowledge | None = None
    ) -> Applied:
        return self.take([Change(change, partition, offset, ack)])[0]

    def skip(self, partition: int, offset: int, ack: bytes | None = None) -> bool:
        return self.take([Refusal(partition, offset, ack)])[0] is Applied.SKIPPED

    def restore(self, rows: Iterable[ViewRow]) -> None:
        with self._lock, self._write() as cur:
            cur.execute("DELETE FROM copy_rows")
            cur.execute("DELETE FROM copy_buckets")
            sums: dict[int, list[int]] = {}
            for row in rows:
                bucket = bucket_of(row.listing_id, self.size)
                value = leaf(row.listing_id, row.version, row.status, row.row_hash())
                cur.execute(
                    f"INSERT INTO copy_rows ({ROW_COLUMNS}, bucket, leaf) VALUES ({', '.join('?' * 11)})",
                    (*columns.encode(row), bucket, f"{value:064x}"),
                )
                total = sums.setdefault(bucket, [0, 0])
                total[0], total[1] = total[0] + value, total[1] + 1
            for bucket, (accumulator, count) in sums.items():
                set_bucket(cur, bucket, accumulator % MODULUS, count)

    def acks_sent(self, sent: list[tuple[int, int]]) -> None:
        if not sent:
            return
        with self._lock, self._write() as cur:
            cur.executemany("DELETE FROM copy_outbox WHERE view_partition = ? AND view_offset = ?", sent)

    # --- reads -----------------------------------------------------------------------

    def unsent_acks(self) -> list[tuple[int, int, bytes]]:
        found = self._locked_read(
            "SELECT view_partition, view_offset, ack FROM copy_outbox ORDER BY view_partition, view_offset"
        )
        return [(p, o, bytes(ack)) for p, o, ack in found]

    def delivered_version(self, listing_id: str) -> int:
        found = self._locked_read("SELECT version FROM copy_versions WHERE listing_id = ?", (listing_id,))
        return int(found[0][0]) if found else 0

    def positions(self) -> dict[int, int]:
        found = self._locked_read("SELECT view_partition, next_offset FROM copy_positions")
        return {int(partition): int(offset) for partition, offset in found}

    def row(self, listing_id: str) -> ViewRow | None:
        found = self._locked_read(f"SELECT {ROW_COLUMNS} FROM copy_rows WHERE listing_id = ?", (listing_id,))
        return columns.decode(tuple(found[0])) if found else None

    def rows(self) -> Iterator[ViewRow]:
        found = self._locked_read(f"SELECT {ROW_COLUMNS} FROM copy_rows ORDER BY listing_id")
        return iter([columns.decode(tuple(values)) for values in found])

    def rows_for_subject(self, subject_ref: str) -> tuple[list[ViewRow], list[Damaged]]:
        sql = f"SELECT {ROW_COLUMNS} FROM copy_rows WHERE subject_ref = ? ORDER BY listing_id"
        rows, damaged = [], []
        for values in self._locked_read(sql, (subject_ref,)):
            try:
                rows.append(columns.decode(tuple(values)))
            except StoreError as e:
                damaged.append(Damaged(str(values[0]), str(e)))
        return rows, damaged

    def record_damage(self, damaged: list[Damaged], at: datetime) -> None:
        with self._lock, self._write() as cur:
            for each in damaged:
                cur.execute(
                    "INSERT INTO copy_damage (listing_id, reason, seen_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (listing_id) DO NOTHING",
                    (each.listing_id, each.reason, at.isoformat()),
                )

    def damage(self) -> dict[str, tuple[str, datetime]]:
        """Recorded damage, less the rows repaired (or gone) since."""
        found = {}
        recorded = self._locked_read("SELECT listing_id, reason, seen_at FROM copy_damage")
        for listing_id, reason, seen_at in recorded:
            sql = f"SELECT {ROW_COLUMNS} FROM copy_rows WHERE listing_id = ?"
            values = self._locked_read(sql, (listing_id,))
            if values and columns.readable(tuple(values[0])) is not None:
                found[str(listing_id)] = (str(reason), datetime.fromisoformat(seen_at))
        return found

    def digest(self) -> Digest:
        digest = Digest(self.size)
        found = self._locked_read("SELECT bucket, accumulator, rows FROM copy_buckets")
        for bucket, accumulator, rows in found:
            digest.buckets[bucket] = int(accumulator, 16)
            digest.rows += rows
        return digest

    def rescan_digest(self) -> Digest:
        leaves = self._leaves(f"SELECT {ROW_COLUMNS} FROM copy_rows", ())
        return Digest.of(((lid, leaf(lid, *found)) for lid, found in leaves.items()), self.size)

    def bucket_leaves(self, bucket: int, buckets: int = DEFAULT_BUCKETS) -> dict[str, tuple[int, str, str]]:
        if buckets == self.size:
            found = self._leaves(f"SELECT {ROW_COLUMNS} FROM copy_rows WHERE bucket = ?", (bucket,))
        else:
            found = self._leaves(f"SELECT {ROW_COLUMNS} FROM copy_rows", ())
        return {lid: leaf for lid, leaf in found.items() if bucket_of(lid, buckets) == bucket}

    def misplaced(self) -> dict[str, tuple[int, str, str]]:
        stored = self._locked_read("SELECT listing_id, bucket FROM copy_rows")
        wrong = [lid for lid, bucket in stored if bucket != bucket_of(lid, self.size)]
        found: dict[str, tuple[int, str, str]] = {}
        for listing_id in wrong:
            found |= self._leaves(f"SELECT {ROW_COLUMNS} FROM copy_rows WHERE listing_id = ?", (listing_id,))
        return found

    def verify(self, bucket: int | None) -> Reindexed:
        with self._lock, self._write() as cur:
            return verify(cur, self.size, bucket)

    def reindex(self) -> Reindexed:
        """Every step of the rolling verification at once: the cost of a full rescan."""
        steps = [self.verify(bucket) for bucket in [None, *range(self.size)]]
        rows = sorted({lid for step in steps for lid in step.rows})
        buckets = sorted({b for step in steps for b in step.buckets})
        return Reindexed(rows, buckets, sum(step.read for step in steps))

    def _leaves(self, sql: str, params: tuple[Any, ...]) -> dict[str, tuple[int, str, str]]:
        leaves = {}
        for values in self._locked_read(sql, params):
            raw = columns.raw_row(tuple(values))
            leaves[raw["listing_id"]] = (int(raw["version"]), str(raw["status"]), columns.row_hash(raw))
        return leaves

    def last_applied_at(self) -> datetime | None:
        found = self._locked_read("SELECT value FROM copy_meta WHERE name = 'last_applied_at'")
        return datetime.fromisoformat(found[0][0]) if found else None

    def _locked_read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """A read on the shared connection, one thread at a time, unless the adapter reads apart."""
        if self.parallel_reads:
            return self._read(sql, params)
        with self._lock:
            return self._read(sql, params)

    def close(self) -> None:
        with self._lock:
            self._close()
