"""A fresh backbone (topics of a namespace of its own, keys, principals) per test, its processes
stopped afterwards; a module that shares one worker between its tests defines its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.connection import KafkaConnection
from tests.integration.ledger.harness import Backbone


@pytest.fixture
def backbone(kafka_admin: KafkaConnection, tmp_path: Path) -> Iterator[Backbone]:
    running = Backbone(kafka_admin, f"t{uuid.uuid4().hex[:10]}.", tmp_path)
    try:
        yield running
    finally:
        running.stop_all()
