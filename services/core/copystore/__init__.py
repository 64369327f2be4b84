"""A copy's store: the `CopyStore` port and its SQLite and PostgreSQL adapters, opened by URL."""

from __future__ import annotations

from services.core.copystore.port import (
    Applied,
    Change,
    CopyStore,
    Damaged,
    Holding,
    Refusal,
    Reindexed,
    StoreError,
)
from services.core.errors import ConfigurationError

__all__ = [
    "Applied",
    "Change",
    "CopyStore",
    "Damaged",
    "Holding",
    "Refusal",
    "Reindexed",
    "StoreError",
    "open_store",
]

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def open_store(url: str, agency: str) -> CopyStore:
    """`sqlite:///relative.db`, `sqlite:////absolute.db` (the default kind) or `postgresql://...`."""
    if url.startswith(SQLITE_PREFIX):
        from services.core.copystore.sqlite import SqliteCopyStore

        return SqliteCopyStore(url.removeprefix(SQLITE_PREFIX), agency)
    if url.startswith(POSTGRES_PREFIXES):
        from services.core.copystore.postgres import PostgresCopyStore

        return PostgresCopyStore(url, agency)
    raise ConfigurationError(f"unknown store URL {url!r}: use sqlite:///path.db or postgresql://host/db")
