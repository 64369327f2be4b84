"""The SQLite adapter: the default copy, one file per agency.

WAL mode lets `accord copy check` and the reconciler read while the sink writes;
`synchronous=NORMAL` may lose the last transactions on a power cut, never on a crash,
and a lost transaction loses its position with it, so the sink simply re-applies it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.core.copystore.columns import Cursor
from services.core.copystore.port import StoreError
from services.core.copystore.sql import SqlCopyStore, schema
from services.core.copystore.statements import DELETE, INSERT

BUSY_TIMEOUT_MS = 10_000
PARAMETERS = 999  # per statement: SQLite's limit before 3.32 (newer builds allow 32,766)


class _SqliteCursor:
    """A sqlite3 cursor that writes a batch's rows in a few statements, not one a row.

    `sqlite3` releases the GIL for each step of a statement and takes it back after it: row by row
    (`executemany`), a batch of 500 changes is about 2,000 steps, each a hand-over of the GIL between
    the sink's writer thread and its loop deciding the next batch. A multi-row INSERT, or one DELETE
    of many keys, is one step for as many rows as 999 parameters hold (`bench_copies`, alternating
    with row by row: 5-6 % more changes a second and per CPU-second)."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Any = (), /) -> Any:
        return self._cur.execute(sql, params)

    def executemany(self, sql: str, params: Any, /) -> Any:
        rows = [tuple(row) for row in params]
        many = _for_many_rows(sql)
        if not rows or many is None:
            return self._cur.executemany(sql, rows)
        width = len(rows[0])
        per, one = PARAMETERS // width, f"({', '.join('?' * width)})"
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            self._cur.execute(many(", ".join([one] * len(chunk))), [value for row in chunk for value in row])
        return None

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


def _for_many_rows(sql: str) -> Callable[[str], str] | None:
    """How to write a one-row statement (`statements`) for a list of rows given as `VALUES …`;
    None for a statement of another shape (sent row by row, as it is)."""
    insert = INSERT.fullmatch(sql)
    if insert is not None:
        table, columns, tail = insert.groups()
        return lambda values: f"INSERT INTO {table} ({columns}) VALUES {values}{tail}"
    delete = DELETE.fullmatch(sql)
    if delete is not None and delete.group(3) is None:  # by two keys SQLite's plan scans the table
        table, key, _ = delete.groups()
        return lambda values: f"DELETE FROM {table} WHERE {key} IN (VALUES {values})"
    return None


class SqliteCopyStore(SqlCopyStore):
    """Writes on one connection; each reading thread (an HTTP server's workers) reads on its own, so
    checks run side by side and never wait for the sink's transaction (WAL)."""

    def __init__(self, path: str, agency: str) -> None:
        super().__init__(agency)
        self.path = path
        self._readers = threading.local()
        self._opened: list[sqlite3.Connection] = []
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open the SQLite copy {path}: {e}") from e
        self._init(schema("BLOB"))
        self.parallel_reads = path != ":memory:"  # a second connection to :memory: is another database

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return db

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        cur = self._db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            yield _SqliteCursor(cur)
            cur.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback(cur)
            raise StoreError(f"write to the SQLite copy {self.path} failed: {e}") from e
        except BaseException:
            self._rollback(cur)
            raise
        finally:
            cur.close()

    def _rollback(self, cur: sqlite3.Cursor) -> None:
        if self._db.in_transaction:
            cur.execute("ROLLBACK")

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._reader().execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"read from the SQLite copy {self.path} failed: {e}") from e

    def _reader(self) -> sqlite3.Connection:
        if not self.parallel_reads:
            return self._db
        db: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if db is None:
            db = self._readers.db = self._connect()
            with self._lock:
                self._opened.append(db)
        return db

    def _close(self) -> None:
        for db in self._opened:
            db.close()
        self._db.close()
