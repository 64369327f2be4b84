"""A backbone's listing topics on the real broker, a fresh keystore, and publishers over them."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from services.core.connection import KafkaConnection
from services.core.crypto import AgencyKey, Keystore
from services.core.kafka import create_topics, decode_message, read_all
from services.core.policy import Policy
from services.core.serde import Decoded
from services.core.topics import BACKBONE, Topics
from services.publisher.client import Publisher
from tests.support.factory import policy_with_keys, trust_env
from tests.unit.publisher.samples import NOW, PSEUDONYM_KEY


@dataclass
class Backbone:
    connection: KafkaConnection
    topics: Topics
    policy: Policy
    keystore: Keystore
    opened: list[Publisher] = field(default_factory=list)

    @property
    def listing_topics(self) -> list[str]:
        return [self.topics.listings(a) for a in sorted({*self.policy.issuers, BACKBONE})]

    def publisher(self, clock: Callable[[], datetime] = lambda: NOW, agency: str = "court") -> Publisher:
        """`agency`'s publisher as a separate process would have it: its own key, reader, producer, locks."""
        signer = AgencyKey(agency, self.keystore.private(agency))
        made = Publisher(
            self.connection, self.topics, self.policy, signer, PSEUDONYM_KEY, timeout=20.0, clock=clock
        )
        self.opened.append(made)
        return made

    def published(self) -> list[Decoded]:
        """Every event now in the listing topics, read back from the broker."""
        return [decode_message(m) for m in read_all(self.connection, self.listing_topics)]


@pytest.fixture
def backbone(kafka_admin: KafkaConnection, namespace: str, tmp_path: Path) -> Iterator[Backbone]:
    policy, keystore = policy_with_keys(tmp_path / "keys")
    topics = Topics(namespace)
    made = Backbone(kafka_admin, topics, policy, keystore)
    specs = [s for s in topics.specs(policy.issuers, policy.enforcers) if s.name in made.listing_topics]
    create_topics(kafka_admin, specs, partitions=3, replication=1)
    try:
        yield made
    finally:
        for publisher in made.opened:
            publisher.close()


def closed_port() -> int:
    """A local port nothing listens on: a broker that cannot be reached."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def publisher_env(backbone: Backbone, tmp_path: Path) -> dict[str, str]:
    """The environment of the court's publisher process (CLI or HTTP server) over `backbone`'s topics."""
    return {
        **backbone.connection.environment(),
        "ACCORD_NAMESPACE": backbone.topics.namespace,
        "ACCORD_KEYSTORE": str(backbone.keystore.folder),  # for `accord keys init`; signing takes one key:
        **trust_env(backbone.keystore, backbone.policy),
        "ACCORD_SIGNING_KEY_FILE": str(backbone.keystore.key_file("court")),
        "ACCORD_CREDENTIALS_FILE": str(tmp_path / "credentials.yaml"),
        "ACCORD_PSEUDONYM_KEY": "process-test-key",
        "ACCORD_PUBLISH_TIMEOUT_S": "20",
    }
