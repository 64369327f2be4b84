"""The time a component reads: a `Clock` is injected, so tests pass a fixed one and nothing sleeps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, as an aware UTC datetime (every timestamp on the backbone is UTC)."""
    return datetime.now(UTC)
