"""A fresh, namespaced backbone (every topic the policy implies) per test, dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.connection import KafkaConnection
from services.core.kafka import EventProducer
from services.core.topics import Topics
from tests.integration.audit.world import World, drop_topics, make_topics
from tests.support.factory import Ledgerbook, policy_with_keys


@pytest.fixture
def world(kafka_admin: KafkaConnection, namespace: str, tmp_path: Path) -> Iterator[World]:
    policy, keystore = policy_with_keys(tmp_path / "keys")
    topics = Topics(namespace)
    names = make_topics(kafka_admin, topics, policy)
    try:
        yield World(
            kafka_admin,
            topics,
            policy,
            Ledgerbook(keystore),
            tmp_path / "keys",
            EventProducer(kafka_admin),
        )
    finally:
        drop_topics(kafka_admin, names)
