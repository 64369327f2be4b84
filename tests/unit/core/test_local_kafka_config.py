"""The launcher's pure parts: broker configuration, ports, ids, pid ownership."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from services.localkafka.broker import (
    LocalKafka,
    LocalKafkaError,
    Node,
    free_ports,
    new_cluster_id,
    render_server_properties,
)
from services.localkafka.security import BrokerSecrets


def _cluster(size: int, root: Path) -> list[Node]:
    return [Node(i, 9091 + i, 19091 + i, 29091 + i, root / f"node-{i}") for i in range(1, size + 1)]


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_single_node_replicates_internal_topics_once(tmp_path: Path) -> None:
    (node,) = _cluster(1, tmp_path)
    props = _properties(render_server_properties(node, [node]))

    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19092"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:19092"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["log.dirs"] == str(tmp_path / "node-1" / "data")
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "default.replication.factor",
                "min.insync.replicas", "share.coordinator.state.topic.replication.factor"):  # fmt: skip
        assert props[key] == "1", key


def test_three_nodes_share_voters_and_tolerate_one_loss(tmp_path: Path) -> None:
    cluster = _cluster(3, tmp_path)
    rendered = [_properties(render_server_properties(node, cluster)) for node in cluster]

    voters = "1@127.0.0.1:19092,2@127.0.0.1:19093,3@127.0.0.1:19094"
    assert {props["controller.quorum.voters"] for props in rendered} == {voters}
    assert [props["node.id"] for props in rendered] == ["1", "2", "3"]
    for props in rendered:
        assert props["default.replication.factor"] == "3"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["transaction.state.log.min.isr"] == "2"


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(6)
    assert len(set(ports)) == 6
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_cluster_ids_look_like_kafka_uuids() -> None:
    for _ in range(200):
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", new_cluster_id())


def test_fixed_ports_follow_the_base_port(tmp_path: Path) -> None:
    nodes = _layout_on_some_free_base(tmp_path)
    base = nodes[0].client_port
    assert [n.client_port for n in nodes] == [base, base + 1, base + 2]
    assert [n.controller_port for n in nodes] == [base + 10000, base + 10001, base + 10002]


def _layout_on_some_free_base(tmp_path: Path) -> list[Node]:
    """A 3-node layout on a base whose six ports happen to be free (others may be busy)."""
    for base in range(20000, 40000, 97):
        try:
            return LocalKafka(tmp_path, nodes=3, base_port=base)._layout()
        except LocalKafkaError:
            continue
    raise AssertionError("no free base port between 20000 and 40000")


def test_a_busy_fixed_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LocalKafkaError, match=f"port {port} "):
            LocalKafka(tmp_path, base_port=port)._layout()


def test_recorded_pids_of_other_programs_are_not_ours(tmp_path: Path) -> None:
    """A pid file naming an unrelated live process (here: this one) must not make
    the cluster look running, nor get that process signalled."""
    broker = LocalKafka(tmp_path)
    broker.pid_file.write_text(f"{os.getpid()}\n")

    assert not broker.is_running()
    broker.stop()  # would SIGTERM pytest itself if it trusted the pid file

    assert not broker.pid_file.exists()


def test_a_secured_node_authenticates_clients_by_scram_and_nodes_by_certificate(tmp_path: Path) -> None:
    cluster = _cluster(3, tmp_path)
    secrets = BrokerSecrets(tmp_path / "security").ensure()
    props = _properties(render_server_properties(cluster[1], cluster, secrets))

    assert props["listeners"] == (
        "CLIENT://127.0.0.1:9093,BROKER://127.0.0.1:29093,CONTROLLER://127.0.0.1:19093"
    )
    assert props["listener.security.protocol.map"] == "CLIENT:SASL_SSL,BROKER:SSL,CONTROLLER:SSL"
    assert props["inter.broker.listener.name"] == "BROKER"
    assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.broker.ssl.client.auth"] == "required"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:CN=accord-broker"
    assert "PLAINTEXT" not in props["listeners"]


def test_secrets_are_private_from_their_first_byte(tmp_path: Path) -> None:
    secrets = BrokerSecrets(tmp_path / "security").ensure()

    assert secrets.folder.stat().st_mode & 0o777 == 0o700
    for path in (
        secrets.keystore,
        secrets.keystore_password_file,
        secrets.admin_password_file,
        secrets.node_key,
    ):
        assert path.stat().st_mode & 0o777 == 0o600, path
    before = secrets.admin_password()
    assert BrokerSecrets(secrets.folder).ensure().admin_password() == before  # kept across restarts
