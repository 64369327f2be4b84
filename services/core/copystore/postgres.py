"""The PostgreSQL adapter: the same tables and statements as SQLite, one database per agency.

The connection runs in autocommit mode so that every read sees the latest committed
state, and each `apply` opens an explicit transaction of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from services.core.copystore.columns import Cursor
from services.core.copystore.port import StoreError
from services.core.copystore.sql import SqlCopyStore, schema
from services.core.copystore.statements import DELETE, IN_LIST, INSERT


def _placeholders(sql: str) -> str:
    """The shared SQL uses `?`; psycopg wants `%s` (no statement here holds a literal ? or %)."""
    return sql.replace("?", "%s")


class _PgCursor:
    """A psycopg cursor that accepts the shared statements.

    A batch's INSERTs go through COPY: straight into the table, or, for an upsert, into a temporary
    staging table that one `INSERT … SELECT … ON CONFLICT` then merges. A statement per row, even
    pipelined by `executemany`, cost the sink six times the client CPU and more of the server's.
    (The shared statements never insert one key twice in a batch, which ON CONFLICT would refuse.)
    A staging table is emptied by the commit (`ON COMMIT DELETE ROWS`: truncated, no dead rows
    left in a table no autovacuum visits); one transaction that merges into the same table twice
    empties it itself before the second (one cursor serves one transaction)."""

    def __init__(self, cur: psycopg.Cursor[Any], staged: frozenset[str]) -> None:
        self._cur, self._staged = cur, staged  # `staged`: made by transactions committed before
        self.created: set[str] = set()  # staging tables this transaction made (gone if it rolls back)
        self._filled: set[str] = set()  # staging tables this transaction filled

    def execute(self, sql: str, params: Any = (), /) -> Any:
        """An `IN (?, ?, …)` list goes as one array, `= ANY(%s)`: psycopg parses every new query text
        anew, and a batch's lists (of 1 to 500 ids) each made a new one, 7 ms to parse."""
        listed = IN_LIST.fullmatch(sql)
        if listed is not None:
            head, tail = listed.groups()
            return self._cur.execute(f"{head} = ANY(%s){tail}", (list(params),))
        return self._cur.execute(_placeholders(sql), params)

    def executemany(self, sql: str, params: Any, /) -> Any:
        if not params:
            return None
        delete = DELETE.fullmatch(sql)
        if delete is not None:
            table, key, other = delete.groups()
            return self._delete(table, key, other, params)
        insert = INSERT.fullmatch(sql)
        if insert is None:
            return self._cur.executemany(_placeholders(sql), params)
        table, columns, conflict = insert.groups()
        target = self._staging(table) if conflict.strip() else table
        with self._cur.copy(f"COPY {target} ({columns}) FROM STDIN") as copy:
            for row in params:
                copy.write_row(row)
        if target != table:
            self._cur.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {target}{conflict}")
        return None

    def _delete(self, table: str, key: str, other: str | None, keys: list[tuple[Any, ...]]) -> Any:
        """Every key at once, as arrays: one statement (a batch's acknowledgements confirmed were 500
        DELETEs, pipelined, each one parsed, planned and run by the server)."""
        if other is None:
            return self._cur.execute(f"DELETE FROM {table} WHERE {key} = ANY(%s)", ([k for (k,) in keys],))
        firsts, seconds = (list(column) for column in zip(*keys, strict=True))
        return self._cur.execute(
            f"DELETE FROM {table} WHERE ({key}, {other}) IN (SELECT * FROM unnest(%s, %s))", (firsts, seconds)
        )

    def _staging(self, table: str) -> str:
        """The session's temporary twin of `table`, empty: emptied at every commit, and here when this
        transaction filled it already."""
        staging = f"staging_{table}"
        if staging not in self._staged and staging not in self.created:
            self._cur.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} (LIKE {table}) ON COMMIT DELETE ROWS"
            )
            self.created.add(staging)
        elif staging in self._filled:
            self._cur.execute(f"DELETE FROM {staging}")
        self._filled.add(staging)
        return staging

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()


class PostgresCopyStore(SqlCopyStore):
    def __init__(self, url: str, agency: str) -> None:
        super().__init__(agency)
        self.where = url.split("@")[-1]  # never echo a password into a log
        try:
            self._db = psycopg.connect(url, autocommit=True)
            self._staged: frozenset[str] = frozenset()  # staging tables this session made and committed
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to the PostgreSQL copy at {self.where}: {e}") from e
        self._init(schema("BYTEA"))

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        try:
            with self._db.transaction(), self._db.cursor() as cur:
                pg = _PgCursor(cur, self._staged)
                yield pg
            self._staged |= pg.created  # committed: they exist for the session (see `_PgCursor`)
        except psycopg.Error as e:
            raise StoreError(f"write to the PostgreSQL copy at {self.where} failed: {e}") from e

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            with self._db.cursor() as cur:
                return cur.execute(_placeholders(sql), params).fetchall()
        except psycopg.Error as e:
            raise StoreError(f"read from the PostgreSQL copy at {self.where} failed: {e}") from e

    def _close(self) -> None:
        self._db.close()
