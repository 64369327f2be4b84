"""A missing prerequisite skips a test on a developer's machine and fails it in CI (`CI=true`),
so that no integration test is ever skipped where the suite is judged."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}; CI runs every integration test, so this is a failure")
    pytest.skip(reason)
