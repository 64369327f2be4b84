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
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from services.core.copystore import columns
from services.core.copystore.port import Acknowledge, Applied, Damaged, Holding, Reindexed, StoreError
from services.core.digest import DEFAULT_BUCKETS, MODULUS, Digest, bucket_of, leaf
from services.core.errors import ConfigurationError, ContractError
from services.core.events import ViewChanged
from services.core.topics import RECONCILER
from services.core.views import ViewRow

SCHEMA_VERSION = "1"
ROW_COLUMNS = ", ".join(columns.COLUMNS)


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


class Cursor(Protocol):
    """What both drivers' cursors offer and this module uses."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class SqlCopyStore:
    """A copy in a SQL database. Adapters implement `_write`, `_read` and `_close`."""

    def __init__(self, agency: str) -> None:
        self.agency = agency
        self.size = DEFAULT_BUCKETS
        self._lock = threading.Lock()  # one connection, possibly shared by an HTTP server's threads

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

    def apply(
        self, change: ViewChanged, partition: int, offset: int, ack: Acknowledge | None = None
    ) -> Applied:
        if change.view_agency != self.agency:
            raise ContractError(
                f"a view change for {change.view_agency} reached the copy of {self.agency} "
                f"(partition {partition}, offset {offset})"
            )
        listing_id = change.envelope.listing_id
        with self._lock, self._write() as cur:
            if self._consumed(cur, partition, offset):
                return Applied.REPEATED
            known = self._known_version(cur, listing_id)
            outcome = judge(change, known)
            held: Holding | None = None
            if outcome is Applied.APPLIED:
                held = self._take(cur, change)
            elif outcome is Applied.OVERTAKEN:
                held = self._holding(cur, listing_id, known)
            self._advance(cur, partition, offset, ack(held) if ack and held is not None else None)
        return outcome

    def _take(self, cur: Cursor, change: ViewChanged) -> Holding:
        listing_id, version = change.envelope.listing_id, change.envelope.version
        self._remove(cur, listing_id)
        row = ViewRow.from_change(change) if change.op == "upsert" else None
        if row is not None:
            self._insert(cur, row)
        self._delivered(cur, listing_id, version)
        self._touch(cur)
        return Holding(row, version)

    def _known_version(self, cur: Cursor, listing_id: str) -> int:
        cur.execute("SELECT version FROM copy_versions WHERE listing_id = ?", (listing_id,))
        found = cur.fetchone()
        return int(found[0]) if found else 0

    def _holding(self, cur: Cursor, listing_id: str, known: int) -> Holding:
        """What the copy holds of a listing, for the acknowledgement of a change it passed over."""
        cur.execute(f"SELECT {ROW_COLUMNS} FROM copy_rows WHERE listing_id = ?", (listing_id,))
        found = cur.fetchone()
        try:
            row = columns.decode(tuple(found)) if found else None
        except StoreError:
            row = None  # a damaged row: the acknowledgement says no row, the reconciler finds it
        return Holding(row, row.version if row is not None else known)

    def skip(self, partition: int, offset: int, ack: bytes | None = None) -> bool:
        with self._lock, self._write() as cur:
            if self._consumed(cur, partition, offset):
                return False
            self._advance(cur, partition, offset, ack)
        return True

    def _consumed(self, cur: Cursor, partition: int, offset: int) -> bool:
        cur.execute("SELECT next_offset FROM copy_positions WHERE view_partition = ?", (partition,))
        position = cur.fetchone()
        return position is not None and offset < position[0]

    def _remove(self, cur: Cursor, listing_id: str) -> None:
        """Take the listing's row out, subtracting the leaf `apply` added for it from the bucket it
        added it to (the listing's own: a hand-edited bucket column cannot mislead this)."""
        cur.execute("SELECT leaf FROM copy_rows WHERE listing_id = ?", (listing_id,))
        found = cur.fetchone()
        if found is None:
            return
        added = _hex(found[0])  # None: a row inserted by hand, never added
        if added is not None:
            self._add_to_bucket(cur, bucket_of(listing_id, self.size), -added, -1)
        cur.execute("DELETE FROM copy_rows WHERE listing_id = ?", (listing_id,))

    def _delivered(self, cur: Cursor, listing_id: str, version: int) -> None:
        """Remember the newest version delivered, upsert or delete (see `delivered_version`)."""
        cur.execute(
            "INSERT INTO copy_versions (listing_id, version) VALUES (?, ?) ON CONFLICT (listing_id) "
            "DO UPDATE SET version = CASE WHEN excluded.version > copy_versions.version "
            "THEN excluded.version ELSE copy_versions.version END",
            (listing_id, version),
        )

    def _insert(self, cur: Cursor, row: ViewRow) -> None:
        bucket = bucket_of(row.listing_id, self.size)
        value = leaf(row.listing_id, row.version, row.status, row.row_hash())
        cur.execute(
            f"INSERT INTO copy_rows ({ROW_COLUMNS}, bucket, leaf) VALUES ({', '.join('?' * 11)})",
            (*columns.encode(row), bucket, f"{value:064x}"),
        )
        self._add_to_bucket(cur, bucket, value, 1)

    def _add_to_bucket(self, cur: Cursor, bucket: int, value: int, rows: int) -> None:
        cur.execute("SELECT accumulator, rows FROM copy_buckets WHERE bucket = ?", (bucket,))
        found = cur.fetchone()
        accumulator, count = (int(found[0], 16), found[1]) if found else (0, 0)
        self._set_bucket(cur, bucket, (accumulator + value) % MODULUS, count + rows)

    def _advance(self, cur: Cursor, partition: int, offset: int, ack: bytes | None) -> None:
        cur.execute(
            "INSERT INTO copy_positions (view_partition, next_offset) VALUES (?, ?) ON CONFLICT "
            "(view_partition) DO UPDATE SET next_offset = excluded.next_offset",
            (partition, offset + 1),
        )
        if ack is not None:
            cur.execute(
                "INSERT INTO copy_outbox (view_partition, view_offset, ack) VALUES (?, ?, ?)",
                (partition, offset, ack),
            )

    def _touch(self, cur: Cursor) -> None:
        cur.execute(
            "INSERT INTO copy_meta (name, value) VALUES ('last_applied_at', ?) ON CONFLICT (name) "
            "DO UPDATE SET value = excluded.value",
            (datetime.now(UTC).isoformat(),),
        )

    def restore(self, rows: Iterable[ViewRow]) -> None:
        with self._lock, self._write() as cur:
            cur.execute("DELETE FROM copy_rows")
            cur.execute("DELETE FROM copy_buckets")
            for row in rows:
                self._insert(cur, row)

    def acks_sent(self, sent: list[tuple[int, int]]) -> None:
        with self._lock, self._write() as cur:
            for partition, offset in sent:
                cur.execute(
                    "DELETE FROM copy_outbox WHERE view_partition = ? AND view_offset = ?",
                    (partition, offset),
                )

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

    def reindex(self) -> Reindexed:
        """One read of every row (the cost of a rescan); a write only for what it found wrong."""
        sums, counts, fixed = [0] * self.size, [0] * self.size, []
        for values in self._locked_read(f"SELECT {ROW_COLUMNS}, bucket, leaf FROM copy_rows"):
            raw = columns.raw_row(tuple(values[:-2]))
            lid, bucket = str(raw["listing_id"]), bucket_of(str(raw["listing_id"]), self.size)
            value = leaf(lid, int(raw["version"]), str(raw["status"]), columns.row_hash(raw))
            sums[bucket], counts[bucket] = (sums[bucket] + value) % MODULUS, counts[bucket] + 1
            if (values[-2], _hex(values[-1])) != (bucket, value):
                fixed.append(lid)
        stored = self._locked_read("SELECT bucket, accumulator, rows FROM copy_buckets")
        held = {int(b): (int(a, 16), int(n)) for b, a, n in stored}
        wrong = [b for b in range(self.size) if held.get(b, (0, 0)) != (sums[b], counts[b])]
        if fixed or wrong:
            with self._lock, self._write() as cur:
                for lid in fixed:
                    self._recache(cur, lid)
                for bucket in wrong:
                    self._set_bucket(cur, bucket, sums[bucket], counts[bucket])
        return Reindexed(fixed, wrong)

    def _recache(self, cur: Cursor, listing_id: str) -> None:
        cur.execute(f"SELECT {ROW_COLUMNS} FROM copy_rows WHERE listing_id = ?", (listing_id,))
        raw = columns.raw_row(tuple(cur.fetchone()))
        value = leaf(listing_id, int(raw["version"]), str(raw["status"]), columns.row_hash(raw))
        cur.execute(
            "UPDATE copy_rows SET bucket = ?, leaf = ? WHERE listing_id = ?",
            (bucket_of(listing_id, self.size), f"{value:064x}", listing_id),
        )

    def _set_bucket(self, cur: Cursor, bucket: int, accumulator: int, rows: int) -> None:
        cur.execute(
            "INSERT INTO copy_buckets (bucket, accumulator, rows) VALUES (?, ?, ?) ON CONFLICT (bucket) "
            "DO UPDATE SET accumulator = excluded.accumulator, rows = excluded.rows",
            (bucket, f"{accumulator:064x}", rows),
        )

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
        with self._lock:
            return self._read(sql, params)

    def close(self) -> None:
        with self._lock:
            self._close()


def judge(change: ViewChanged, known: int) -> Applied:
    """Never older than what the copy knows; the ledger's same version once, a repair's again."""
    version = change.envelope.version
    if version < known:
        return Applied.OVERTAKEN
    if version == known and change.envelope.agency != RECONCILER:
        return Applied.REPEATED
    return Applied.APPLIED


def _hex(text: Any) -> int | None:
    """A stored leaf, or None for one missing or not hex (a row inserted by hand)."""
    try:
        return int(str(text), 16) if text is not None else None
    except ValueError:
        return None
