"""Fixtures for tests that run against every copy-store adapter: one SQLite, one PostgreSQL.

Registered for the whole suite in tests/conftest.py (`pytest_plugins`), so the store
behaviour suite and the sink's broker tests parametrise over the same two databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.copystore import CopyStore, open_store
from tests.unit.copies.changes import AGENCY


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty copy database of each kind, by URL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/copy.db"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def store(url: str) -> Iterator[CopyStore]:
    """The copy of `AGENCY` opened on `url`, closed after the test."""
    opened = open_store(url, AGENCY)
    yield opened
    opened.close()
