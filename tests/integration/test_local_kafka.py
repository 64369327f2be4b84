"""The broker the whole suite stands on: it works, it replicates, and it fails clearly."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

# confluent_kafka.admin's documented names, imported there without `as` or an __all__ (as in services/core)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    PartitionMetadata,
)

from services.core.connection import KafkaConnection
from services.core.kafka import admin_client
from services.localkafka.broker import LocalKafka, MissingToolError
from services.localkafka.cli import kafka


def _create_topic(admin: AdminClient, topic: NewTopic) -> None:
    admin.create_topics([topic])[topic.topic].result(timeout=30)


def _read_one(connection: KafkaConnection, topic: str) -> Message:
    """The first record of partition 0, read by assignment (no group to join)."""
    consumer = Consumer(connection.client_config(**{"group.id": "unused",
                         "enable.auto.commit": False}))  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                return message
        raise AssertionError(f"no record on {topic} within 30 s")
    finally:
        consumer.close()


def test_session_broker_round_trips_a_record(kafka_admin: KafkaConnection, namespace: str) -> None:
    topic = namespace + "round-trip"
    _create_topic(admin_client(kafka_admin), NewTopic(topic, 1, 1))
    producer = Producer(kafka_admin.client_config(**{"acks": "all"}))
    producer.produce(topic, key=b"listing-1", value=b'{"v":1}', headers=[("agency", b"a1")])
    assert producer.flush(30) == 0

    record = _read_one(kafka_admin, topic)

    assert (record.key(), record.value()) == (b"listing-1", b'{"v":1}')
    assert record.headers() == [("agency", b"a1")]


def test_session_broker_does_not_create_topics_on_demand(
    kafka_admin: KafkaConnection, namespace: str
) -> None:
    """Topics are declared by their owners; a typo must not conjure a topic."""
    topic = namespace + "never-declared"
    metadata = admin_client(kafka_admin).list_topics(topic, timeout=10)
    error = metadata.topics[topic].error
    assert error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


@pytest.mark.timeout(240)
def test_three_node_cluster_keeps_three_in_sync_replicas(tmp_path: Path) -> None:
    cluster = LocalKafka(tmp_path / "cluster", nodes=3)
    try:
        cluster.start()
        admin = cluster.connection()
        assert admin is not None and admin.protocol == "SASL_SSL"  # secured by default, three nodes too
        _check_replication(admin)
    finally:
        cluster.stop()
    assert not cluster.is_running()


def _check_replication(connection: KafkaConnection) -> None:
    """A topic with replication factor 3 has every replica in sync, on three nodes.

    Its own function so that the admin client is gone before the cluster stops.
    """
    admin = admin_client(connection)
    assert len(admin.list_topics(timeout=10).brokers) == 3
    _create_topic(admin, NewTopic("replicated", 3, 3, config={"min.insync.replicas": "2"}))

    partitions = _partitions_when_fully_in_sync(admin, "replicated")

    assert len(partitions) == 3
    assert all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in partitions)
    assert _topic_config(admin, "replicated")["min.insync.replicas"].value == "2"


def _topic_config(admin: AdminClient, topic: str) -> dict[str, Any]:
    """The node asked may not know a topic created a moment ago yet (seen: UNKNOWN_TOPIC_OR_PART)."""
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    deadline = time.monotonic() + 30
    while True:
        try:
            return dict(admin.describe_configs([resource])[resource].result(timeout=30))
        except KafkaException as e:
            if e.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _partitions_when_fully_in_sync(admin: AdminClient, topic: str) -> list[PartitionMetadata]:
    """Followers join the ISR a moment after creation: wait for it, briefly."""
    deadline = time.monotonic() + 30
    while True:
        partitions = list(admin.list_topics(topic, timeout=10).topics[topic].partitions.values())
        if partitions and all(len(p.isrs) == 3 for p in partitions):
            return partitions
        if time.monotonic() > deadline:
            return partitions
        time.sleep(0.5)


def test_missing_java_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    with pytest.raises(MissingToolError, match=r"`java`.*openjdk-17-jre-headless"):
        LocalKafka(tmp_path / "state").start()


def test_missing_maven_is_named_when_jars_are_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_java = tmp_path / "bin"
    only_java.mkdir()
    (only_java / "java").symlink_to(_which("java"))
    monkeypatch.setenv("PATH", str(only_java))
    monkeypatch.setenv("ACCORD_CACHE_DIR", str(tmp_path / "empty-cache"))

    with pytest.raises(MissingToolError, match=r"`mvn`.*apt-get install -y maven"):
        LocalKafka(tmp_path / "state").start()


def test_cli_reports_missing_java_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("ACCORD_STATE_DIR", str(tmp_path / "state"))

    result = CliRunner().invoke(kafka, ["up", "--port", str(_unused_port())])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "openjdk-17-jre-headless" in result.stderr
    assert "Traceback" not in result.output


def _which(tool: str) -> str:
    found = shutil.which(tool)
    assert found is not None
    return found


def _unused_port() -> int:
    """A free port the CLI accepts (the inter-broker listener is 20000 above: the OS may pick too high)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port <= 45535:
            return port
