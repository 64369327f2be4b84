"""Fixtures of the reconciler's unit tests: sealed event chains and a small reconciled world."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.factory import Ledgerbook, policy_with_keys
from tests.unit.reconciler.support import World


@pytest.fixture
def ledgerbook(tmp_path: Path) -> Ledgerbook:
    _, keystore = policy_with_keys(tmp_path / "keys")
    return Ledgerbook(keystore)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World.make(tmp_path / "keys")
