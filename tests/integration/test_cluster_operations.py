"""Cluster operations that keep data safe, on a real three-node cluster (`accord kafka up --nodes 3`)
and on the one-node session broker: topics get the replication factor asked for or the command refuses
with the reason; `backbone status` shows under-replicated partitions while a node is down; `kafka up`
on a degraded cluster starts only the missing node, and under-replication clears."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core.connection import SECURITY_VARIABLES, KafkaConnection
from services.core.kafka import admin_client, create_topics
from services.core.policy import load_policy
from services.core.topics import Topics
from services.localkafka.broker import LocalKafka, free_base_port

pytestmark = pytest.mark.timeout(600)


def accord(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


class Cluster:
    """A three-node cluster started by `accord kafka up` in a state folder of this module's own."""

    def __init__(self, state: Path) -> None:
        self.state, self.port = state, free_base_port(3)
        base = {
            k: v for k, v in os.environ.items() if k not in (*SECURITY_VARIABLES, "KAFKA_BOOTSTRAP_SERVERS")
        }
        self.env = {**base, "ACCORD_STATE_DIR": str(state)}
        self.broker = LocalKafka(state / "kafka", nodes=3)

    def up(self) -> subprocess.CompletedProcess[str]:
        return accord(self.env, "kafka", "up", "--nodes", "3", "--port", str(self.port))

    def admin_env(self, namespace: str, replication: int) -> dict[str, str]:
        """`. kafka/client.env`, a namespace, and the replication factor to ask for."""
        lines = (self.state / "kafka" / "client.env").read_text().splitlines()
        client = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        return {
            **self.env,
            **client,
            "ACCORD_NAMESPACE": namespace,
            "ACCORD_REPLICATION_FACTOR": str(replication),
        }

    @property
    def connection(self) -> KafkaConnection:
        connection = self.broker.connection()
        assert connection is not None
        return connection


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("three-nodes"))
    try:
        started = cluster.up()
        assert started.returncode == 0, started.stderr
        yield cluster
    finally:
        accord(cluster.env, "kafka", "down")  # stops the JVMs by recorded pid
    assert not cluster.broker.alive_nodes()


def replicas(connection: KafkaConnection, names: list[str]) -> dict[str, set[int]]:
    """Each topic's replica counts, over its partitions."""
    topics = admin_client(connection).list_topics(timeout=10).topics
    return {name: {len(p.replicas) for p in topics[name].partitions.values()} for name in names}


def backbone_topics(namespace: str) -> list[str]:
    policy = load_policy()
    return [spec.name for spec in Topics(namespace).specs(policy.issuers, policy.enforcers)]


def test_one_node_refuses_replication_factor_three_and_says_why(
    kafka_admin: KafkaConnection, namespace: str, tmp_path: Path
) -> None:
    env = {**os.environ, **kafka_admin.environment(), "ACCORD_NAMESPACE": namespace,
           "ACCORD_REPLICATION_FACTOR": "3", "ACCORD_STATE_DIR": str(tmp_path)}  # fmt: skip
    refused = accord(env, "backbone", "up", "--topics-only")
    assert refused.returncode == 1, refused.stderr
    assert "replication factor 3" in refused.stderr and "1 broker(s) available" in refused.stderr
    assert "Traceback" not in refused.stderr
    existing = admin_client(kafka_admin).list_topics(timeout=10).topics
    assert not [name for name in existing if name.startswith(namespace)]  # nothing half made


def test_three_nodes_get_replication_factor_three_and_a_lesser_topic_is_refused(
    cluster: Cluster, namespace: str
) -> None:
    made = accord(cluster.admin_env(namespace, 3), "backbone", "up", "--topics-only")
    assert made.returncode == 0, made.stderr
    names = backbone_topics(namespace)
    assert replicas(cluster.connection, names) == {name: {3} for name in names}

    other = "x" + namespace
    ledger = Topics(other).ledger
    create_topics(cluster.connection, [s for s in Topics(other).specs([], []) if s.name == ledger], 3, 1)
    refused = accord(cluster.admin_env(other, 3), "backbone", "up", "--topics-only")
    assert refused.returncode == 1 and f"{ledger} (1)" in refused.stderr, refused.stderr
    assert replicas(cluster.connection, [ledger]) == {ledger: {1}}  # left as it was, and said so


def status(env: dict[str, str]) -> dict[str, Any]:
    done = accord(env, "backbone", "status", "--json", timeout=60)
    assert done.returncode == 3, done.stderr  # no services supervised: topics only
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def cluster_until(env: dict[str, str], holds: Callable[[dict[str, Any]], Any], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        report: dict[str, Any] = status(env)["cluster"]
        if report["reachable"] and holds(report):
            return report
        assert time.monotonic() < deadline, f"never {what}: {report}"
        time.sleep(1)


def test_a_dead_node_shows_as_under_replication_and_kafka_up_starts_only_it(
    cluster: Cluster, namespace: str
) -> None:
    env = cluster.admin_env(namespace, 3)
    assert accord(env, "backbone", "up", "--topics-only").returncode == 0
    assert cluster_until(env, lambda c: c["under_replicated"] == [], "fully in sync")["brokers"] == [1, 2, 3]
    before = cluster.broker.alive_nodes()
    os.kill(before[3], signal.SIGKILL)

    degraded = cluster_until(env, lambda c: c["under_replicated"] and c["brokers"] == [1, 2], "degraded")
    assert {3} == {r for p in degraded["under_replicated"] for r in p["replicas"] if r not in p["in_sync"]}
    assert {p["topic"] for p in degraded["under_replicated"]} <= set(backbone_topics(namespace))
    text = accord(env, "backbone", "status").stdout
    assert f"{len(degraded['under_replicated'])} under-replicated partition(s)" in text
    more = accord(cluster.admin_env("y" + namespace, 3), "backbone", "up", "--topics-only")
    assert more.returncode == 1 and "2 broker(s) available" in more.stderr, more.stderr
    listed = admin_client(cluster.connection).list_topics(timeout=10).topics
    assert not [name for name in listed if name.startswith("y" + namespace)]  # none made under-replicated

    shown = accord(cluster.env, "kafka", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["down"] == [3] and list(json.loads(shown.stdout)["nodes"]) == ["1", "2"]

    restarted = cluster.up()
    assert restarted.returncode == 0, restarted.stderr
    assert "starting node(s) [3] only" in restarted.stderr
    after = cluster.broker.alive_nodes()
    assert {n: after[n] for n in (1, 2)} == {n: before[n] for n in (1, 2)}  # the healthy nodes untouched
    assert after[3] != before[3]
    healed = cluster_until(env, lambda c: c["under_replicated"] == [] and c["brokers"] == [1, 2, 3], "healed")
    assert healed["brokers"] == [1, 2, 3]
    nodes = json.loads(accord(cluster.env, "kafka", "status", "--json").stdout)["nodes"]
    assert {int(n): s["pid"] for n, s in nodes.items()} == after
