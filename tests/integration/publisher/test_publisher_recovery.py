"""A long-lived publisher survives the broker: a restart (HTTP server and Python client) and, on
three nodes, the loss of the partition leader. Each test runs a broker of its own
(`LocalKafka` in a temporary directory), so stopping it disturbs no other test.

These tests are about the publisher, so no ledger runs: a command counts as published once the
broker confirmed it (201, or 202 "not yet decided"), and refused only by a 503 that names the broker.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.connection import KafkaConnection
from services.core.credentials import FileCredentials
from services.core.crypto import AgencyKey
from services.core.errors import BrokerUnavailable
from services.core.kafka import admin_client, create_topics
from services.core.topics import Topics
from services.localkafka.broker import LocalKafka, free_base_port
from services.publisher.client import Publisher
from services.publisher.delivery import ConfirmingProducer
from services.publisher.errors import Undecided
from tests.integration.publisher.conftest import Server
from tests.support.factory import Ledgerbook, policy_with_keys, trust_env
from tests.unit.publisher import samples
from tests.unit.publisher.samples import NOW, PSEUDONYM_KEY

BACK_WITHIN_S = 10.0
TIMEOUT_S = 3.0  # the publisher's own deadline for the broker: a 503 comes this quickly


class World:
    """A broker of the test's own (secured, as every local broker), the backbone's topics on it,
    and a keystore. The publisher connects as the broker's super user: what is tested here is
    recovery, not authorization (tests/integration/test_security.py has the agency's principal)."""

    def __init__(self, folder: Path, nodes: int) -> None:
        self.cluster = LocalKafka(folder / "kafka", nodes=nodes, base_port=free_base_port(nodes))
        self.cluster.start()
        admin = self.cluster.connection()
        assert admin is not None and admin.uses_sasl
        self.connection: KafkaConnection = admin
        self.policy, self.keystore = policy_with_keys(folder / "keys")
        self.topics = Topics(f"t{uuid.uuid4().hex[:8]}.")
        specs = self.topics.specs(self.policy.issuers, self.policy.enforcers)
        create_topics(self.connection, specs, partitions=3, replication=min(nodes, 3))
        credentials = folder / "credentials.yaml"
        self.token = {"Authorization": f"Bearer {FileCredentials(credentials).issue('court', 'clerk')}"}
        self.env = {**self.connection.environment(), "ACCORD_NAMESPACE": self.topics.namespace,
                    **trust_env(self.keystore, self.policy), "ACCORD_CREDENTIALS_FILE": str(credentials),
                    "ACCORD_SIGNING_KEY_FILE": str(self.keystore.key_file("court")),
                    "ACCORD_PSEUDONYM_KEY": "k",
                    "ACCORD_PUBLISH_TIMEOUT_S": str(TIMEOUT_S), "ACCORD_DECISION_WAIT_S": "0"}  # fmt: skip

    def publisher(self) -> Publisher:
        signer = AgencyKey("court", self.keystore.private("court"))
        return Publisher(self.connection, self.topics, self.policy, signer, PSEUDONYM_KEY,
                         timeout=TIMEOUT_S, clock=lambda: NOW, decision_wait=0.0)  # fmt: skip


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    made = World(tmp_path, getattr(request, "param", 1))
    try:
        yield made
    finally:
        made.cluster.stop()


def published(publisher: Publisher) -> bool:
    """One issue through the client: True once the broker confirmed it, False on `BrokerUnavailable`."""
    try:
        publisher.issue(samples.issue())
    except Undecided:
        return True  # in the log; no ledger runs here to rule on it
    except BrokerUnavailable:
        return False
    return True


def posted(url: str, token: dict[str, str]) -> httpx.Response:
    body = {**samples.issue().model_dump(mode="json"), "national_id": samples.NATIONAL_ID,
            "full_name": samples.FULL_NAME}  # fmt: skip
    return httpx.post(f"{url}/listings", json=body, headers=token, timeout=30)


def until(what: str, attempt: Any, within: float) -> float:
    """Call `attempt` until it returns True; fail after `within` s; return how long it took."""
    started = time.monotonic()
    while not attempt():
        if time.monotonic() - started > within:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.2)
    return time.monotonic() - started


@pytest.mark.timeout(240)
def test_a_broker_restart_gives_503_while_down_and_service_within_seconds_of_its_return(
    world: World, serve: Server
) -> None:
    url = serve(world.env)
    client = world.publisher()
    try:
        assert posted(url, world.token).status_code == 202 and published(client)
        world.cluster.stop()
        down = posted(url, world.token)
        assert down.status_code == 503 and down.json()["code"] == "broker_unavailable", down.text
        assert not published(client)
        world.cluster.start()
        serving = lambda: posted(url, world.token).status_code == 202  # noqa: E731
        http_back = until("the HTTP publisher serving again", serving, BACK_WITHIN_S)
        client_back = until("the Python client publishing again", lambda: published(client), BACK_WITHIN_S)
        print(f"back after the broker's return: HTTP {http_back:.1f} s, client {client_back:.1f} s")
        assert all(posted(url, world.token).status_code == 202 for _ in range(5))  # and it stays back
    finally:
        client.close()


def leader_of(connection: KafkaConnection, topic: str, partition: int) -> int:
    metadata = admin_client(connection).list_topics(topic, timeout=10)
    return int(metadata.topics[topic].partitions[partition].leader)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("world", [3], indirect=True)
def test_killing_the_partition_leader_of_three_nodes_does_not_stop_a_publisher(world: World) -> None:
    client = world.publisher()
    try:  # a cluster started a moment ago may still be settling its leaders (seen under load)
        until("the first publish", lambda: published(client), 60)
        topic = world.topics.listings("court")
        leader = leader_of(world.connection, topic, 0)
        os.kill(world.cluster.pids()[leader - 1], signal.SIGKILL)  # nodes are recorded in id order
        first = until("publishing after the leader's loss", lambda: published(client), 60)
        started = time.monotonic()
        assert all(published(client) for _ in range(20))
        twenty = time.monotonic() - started
        print(f"after killing node {leader}: first publish in {first:.1f} s, then 20 in {twenty:.1f} s")
        assert twenty < 10, "publishing stayed slow after the leader changed"
    finally:
        client.close()


@pytest.mark.timeout(240)
def test_a_producer_whose_delivery_timed_out_is_replaced_and_delivers_again(world: World) -> None:
    """The delivery half alone: a send while the broker is down times out ("Message timed out"),
    the idempotent producer is replaced (an idempotent producer can stay unable to deliver after a
    timeout or a fatal error), and the next send after the broker's return lands."""
    producer = ConfirmingProducer(world.connection, TIMEOUT_S)
    topic, book = world.topics.listings("court"), Ledgerbook(world.keystore)

    def delivers(listing_id: str) -> bool:
        try:
            return producer.send(topic, listing_id, book.issue(listing_id)).offset >= 0
        except BrokerUnavailable:
            return False

    try:  # a fresh broker can still be loading its coordinators: the first send may time out too
        until("a first delivery", lambda: delivers("L-0"), 60.0)
        before = producer._producer
        world.cluster.stop()
        with pytest.raises(BrokerUnavailable, match="may or may not be in the log"):
            producer.send(topic, "L-1", book.issue("L-1"))
        assert producer._producer is not before  # the producer that timed out is gone
        world.cluster.start()
        until("a delivery after the broker's return", lambda: delivers("L-2"), BACK_WITHIN_S)
    finally:
        producer.close()
