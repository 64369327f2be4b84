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


def _placeholders(sql: str) -> str:
    """The shared SQL uses `?`; psycopg wants `%s` (no statement here holds a literal ? or %)."""
    return sql.replace("?", "%s")


class _PgCursor:
    """A psycopg cursor that accepts the shared statements."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Any = (), /) -> Any:
        return self._cur.execute(_placeholders(sql), params)

    def executemany(self, sql: str, params: Any, /) -> Any:
        return self._cur.executemany(_placeholders(sql), params) if params else None

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
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to the PostgreSQL copy at {self.where}: {e}") from e
        self._init(schema("BYTEA"))

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        try:
            with self._db.transaction(), self._db.cursor() as cur:
                yield _PgCursor(cur)
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
