"""A backbone's topics on the real broker, a ledger worker ruling on what is published, and publishers.

The publisher reports the ledger's verdict, so its tests need the ledger running: one
worker (a real `accord ledger run` process, tests/integration/ledger/harness.py) serves
the whole package, in a namespace of its own. Tests tell their events apart by listing
(every issue makes a fresh listing id), never by counting the whole topic.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from services.core.connection import KafkaConnection
from services.core.crypto import AgencyKey, Keystore
from services.core.kafka import consumer, decode_message, end_offsets, read_all
from services.core.policy import Policy
from services.core.serde import Decoded
from services.core.topics import BACKBONE, Topics
from services.publisher.client import Publisher
from tests.integration.ledger import harness
from tests.support.factory import trust_env
from tests.unit.publisher.samples import NOW, PSEUDONYM_KEY

Server = Callable[[dict[str, str]], str]
WAIT = 30.0  # for the broker and for the ledger's verdict: generous, as the machine is shared


@dataclass
class Backbone:
    connection: KafkaConnection
    topics: Topics
    policy: Policy
    keystore: Keystore
    ledger: harness.Backbone
    opened: list[Publisher] = field(default_factory=list)
    probe: Consumer | None = None
    partitions: dict[tuple[str, ...], list[TopicPartition]] = field(default_factory=dict)

    @property
    def listing_topics(self) -> list[str]:
        return [self.topics.listings(a) for a in sorted({*self.policy.issuers, BACKBONE})]

    def publisher(self, clock: Callable[[], datetime] = lambda: NOW, agency: str = "court") -> Publisher:
        """`agency`'s publisher as a separate process would have it: its own key, reader, producer and
        locks, connected as `agency`'s own principal (on a secured broker). An agency that issues
        nothing has no publishing principal: its publisher (built only to meet the issuer rule)
        connects as the session's admin."""
        signer = AgencyKey(agency, self.keystore.private(agency))
        issuer = agency in self.policy.issuers
        connection = self.ledger.connection_as(agency) if issuer else self.connection
        made = Publisher(connection, self.topics, self.policy, signer, PSEUDONYM_KEY,
                         timeout=WAIT, clock=clock, decision_wait=WAIT)  # fmt: skip
        self.opened.append(made)
        return made

    def records_in(self, topics: list[str]) -> int:
        """How many records `topics` hold now (their high watermarks, summed), asked on one client kept
        for the test: `end_offsets` makes a client per question, a TLS and SCRAM handshake each, which
        made a test that asks hundreds of times spend most of its time connecting."""
        names = tuple(topics)
        if names not in self.partitions:
            self.partitions[names] = list(end_offsets(self.connection, names))
        if self.probe is None:
            self.probe = consumer(self.connection, self.connection.group("watermarks"))
        probe = self.probe
        return sum(
            probe.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in self.partitions[names]
        )

    def close(self) -> None:
        for publisher in self.opened:
            publisher.close()
        if self.probe is not None:
            self.probe.close()

    def published(self, *listing_ids: str) -> list[Decoded]:
        """Every event now in the listing topics about `listing_ids`, read back from the broker."""
        wanted = {listing_id.encode() for listing_id in listing_ids}
        read = [m for m in read_all(self.connection, self.listing_topics) if m.key() in wanted]
        return [decode_message(m) for m in read]


@pytest.fixture(scope="package")
def ledgered(
    kafka_admin: KafkaConnection, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[harness.Backbone]:
    """Every topic of a namespace of the package's own, and a ledger worker over them."""
    running = harness.Backbone(kafka_admin, f"t{uuid.uuid4().hex[:10]}.", tmp_path_factory.mktemp("pub"))
    running.start_ledger()
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def backbone(ledgered: harness.Backbone) -> Iterator[Backbone]:
    ledgered.assert_alive()
    made = Backbone(ledgered.connection, ledgered.topics, ledgered.policy, ledgered.keystore, ledgered)
    try:
        yield made
    finally:
        made.close()


def closed_port() -> int:
    """A local port nothing listens on: a broker that cannot be reached."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Servers:
    """`uvicorn --factory services.publisher.http:app_from_env` processes, each stopped by its pid."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, env: dict[str, str]) -> str:
        port = closed_port()
        command = [sys.executable, "-m", "uvicorn", "--factory", "services.publisher.http:app_from_env",
                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
        process = subprocess.Popen(command, env={**os.environ, **env})
        self.started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"the publisher's HTTP server did not start (exit {process.poll()})")

    def stop(self) -> None:
        for process in self.started:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def serve() -> Iterator[Server]:
    """Start the publisher's HTTP server with an environment; it is stopped when the test ends."""
    servers = Servers()
    try:
        yield servers.start
    finally:
        servers.stop()


def environment(ledgered: harness.Backbone, credentials: Path, agency: str | None = None) -> dict[str, str]:
    """The environment of the court's publisher process (CLI or HTTP server) over `ledgered`'s topics,
    signing with the court's key alone and taking the bearer tokens of `credentials`: as `agency`'s
    own Kafka principal (on a secured broker), else as the session's admin."""
    return {
        **ledgered.connection.environment(),
        **(ledgered.as_(agency) if agency else {}),
        "ACCORD_NAMESPACE": ledgered.topics.namespace,
        "ACCORD_KEYSTORE": str(ledgered.keystore.folder),  # for `accord keys init`; signing takes one key:
        **trust_env(ledgered.keystore, ledgered.policy),
        "ACCORD_SIGNING_KEY_FILE": str(ledgered.keystore.key_file("court")),
        "ACCORD_CREDENTIALS_FILE": str(credentials),
        "ACCORD_PSEUDONYM_KEY": "process-test-key",
        "ACCORD_PUBLISH_TIMEOUT_S": str(WAIT),
        "ACCORD_DECISION_WAIT_S": str(WAIT),
    }


@pytest.fixture
def publisher_env(backbone: Backbone, tmp_path: Path) -> dict[str, str]:
    """A publisher process of the court (every command in these tests is the court's), running
    as the court's principal: it may write only `listings.court` and read `ledger` and `rejected`."""
    books = {"ACCORD_PUBLISHER_BOOK_DIR": str(tmp_path / "books")}  # a book of the test's own
    return environment(backbone.ledger, tmp_path / "credentials.yaml", "court") | books
