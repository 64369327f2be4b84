"""The ledger's own failures, on a real broker: a write the broker refuses, topics that disagree.

A produce that fails (here: a `ledger` record over the topic's `max.message.bytes`) must stop
the worker loudly, with nothing committed past the message that caused it, and the message is
processed again once the worker restarts. A worker whose topics have different partition
counts must refuse to start, saying which.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from faust.stores.rocksdb import RocksDBOptions

from services.core.connection import KafkaConnection
from services.core.events import ListingState, Rejected, ViewChanged
from services.core.kafka import admin_client, consumer, create_topics, partition_counts, read_all
from services.core.partitioner import partition_of
from services.core.policy import load_policy
from services.core.settings import KafkaSettings
from services.core.topics import KEEP_FOREVER, TopicSpec
from services.ledger.layout import TABLES, changelog, gaps_topic, prepare
from services.ledger.worker import EXIT_HANDLER_FAILED
from tests.integration.ledger.harness import PARTITIONS, Backbone, wait_for
from tests.support.backbones import fresh_namespace, running_backbone

TIMEOUT = 90.0
OFFSET_KEY = (
    b"__faust\0offset__"  # where Faust's RocksDB store keeps a partition's persisted changelog offset
)


@pytest.fixture
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture
def backbone(kafka_admin: KafkaConnection, folder: Path) -> Iterator[Backbone]:
    with running_backbone(kafka_admin, folder) as running:
        yield running


def set_max_message_bytes(admin_connection: KafkaConnection, topic: str, limit: int) -> None:
    admin = admin_client(admin_connection)
    entry = ConfigEntry("max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def committed(backbone: Backbone, topic: str, partition: int) -> int:
    group = consumer(backbone.connection, f"{backbone.namespace}ledger")
    try:
        (tp,) = group.committed([TopicPartition(topic, partition)], timeout=10)
        return max(tp.offset, 0)
    finally:
        group.close()


def exited(process: subprocess.Popen[bytes], timeout: float) -> int:
    wait_for("the ledger to exit", lambda: process.poll() is not None, timeout)
    return process.returncode


def test_a_failed_write_stops_the_worker_and_is_redone_on_restart(backbone: Backbone) -> None:
    ledger_topic, source = backbone.topics.ledger, backbone.topics.listings("court")
    set_max_message_bytes(backbone.connection, ledger_topic, 256)  # every listing state is larger
    book = backbone.book()
    backbone.publish([book.issue("W-1")])
    process = backbone.start_ledger()

    assert exited(process, TIMEOUT) == EXIT_HANDLER_FAILED
    backbone.processes.pop("ledger")
    log = (backbone.folder / "ledger.log").read_text()
    assert "ledger handler failed; stopping the worker" in log and "Message size too large" in log
    assert backbone.count(ledger_topic) == 0
    assert committed(backbone, source, partition_of(b"W-1", PARTITIONS)) == 0  # W-1 sits at offset 0

    set_max_message_bytes(backbone.connection, ledger_topic, 1048588)
    backbone.start_ledger()

    def written() -> list[ListingState] | None:
        backbone.assert_alive()
        found = [e for e in backbone.read(ledger_topic) if isinstance(e, ListingState)]
        return found or None

    (state,) = wait_for("W-1 in the ledger topic after the restart", written, TIMEOUT, every=0.5)
    assert (state.envelope.listing_id, state.envelope.version) == ("W-1", 1)
    railway = [e for e in backbone.read(backbone.topics.views("railway")) if isinstance(e, ViewChanged)]
    assert [(c.envelope.listing_id, c.op) for c in railway][-1] == ("W-1", "upsert")
    wait_for(
        "the input committed", lambda: committed(backbone, source, partition_of(b"W-1", PARTITIONS)) == 1, 30
    )


def test_the_table_changelogs_hold_what_the_store_holds_and_a_restart_recovers_from_them(
    backbone: Backbone,
) -> None:
    """The tables' changelog records go out through the ledger's own producer: each one the store
    holds is in the changelog, each partition's persisted offset is that of a record the broker
    confirmed, and a worker whose RocksDB is lost rebuilds its table from the changelog alone."""
    book = backbone.book()
    issues = [book.issue(f"C-{i}") for i in range(12)]
    backbone.publish(issues)
    backbone.start_ledger(store="rocksdb://")

    def decided() -> bool:
        backbone.assert_alive()
        return backbone.count(backbone.topics.ledger) >= 12

    wait_for("12 decisions", decided, TIMEOUT)
    backbone.stop_all()

    topic = changelog(KafkaSettings.of(backbone.connection, namespace=backbone.namespace), "listings")
    logged: dict[bytes, bytes | None] = {}
    ends: dict[int, int] = {}
    for msg in read_all(backbone.connection, [topic]):
        logged[msg.key() or b""] = msg.value()
        ends[msg.partition() or 0] = max(ends.get(msg.partition() or 0, -1), msg.offset() or 0)
    tables = backbone.folder / "ledger" / "v1" / "tables"
    for partition in range(PARTITIONS):
        db = RocksDBOptions().open(tables / f"listings-{partition}.db")
        try:
            stored = {k: v for k, v in db.items() if k != OFFSET_KEY}
            persisted = db.get(OFFSET_KEY)
        finally:
            db.close()
        assert stored and all(logged[k] == v for k, v in stored.items())
        assert persisted is not None and 0 <= int(persisted) <= ends[partition]

    shutil.rmtree(backbone.folder / "ledger" / "v1" / "tables")  # only the changelog is left
    backbone.start_ledger(store="rocksdb://")
    backbone.publish([book.correct("C-3", legal_basis="after the store was lost")])

    def corrected() -> ListingState | None:
        backbone.assert_alive()
        states = [e for e in backbone.read(backbone.topics.ledger) if isinstance(e, ListingState)]
        return next((s for s in states if (s.envelope.listing_id, s.envelope.version) == ("C-3", 2)), None)

    assert wait_for("C-3 v2 decided on the recovered table", corrected, TIMEOUT, every=0.5).legal_basis == (
        "after the store was lost"
    )
    refused = [e for e in backbone.read(backbone.topics.rejected) if isinstance(e, Rejected)]
    assert refused == []  # the correction met C-3 v1 in the table: nothing refused


def test_the_ledger_refuses_to_start_when_partition_counts_disagree(
    kafka_admin: KafkaConnection, folder: Path
) -> None:
    namespace = fresh_namespace()
    court = f"{namespace}listings.court"
    create_topics(kafka_admin, [TopicSpec(court, "listing_id", (), KEEP_FOREVER)], PARTITIONS + 3, 1)
    with running_backbone(kafka_admin, folder, namespace) as backbone:  # the other topics: PARTITIONS each
        process = backbone.start_ledger()
        assert exited(process, TIMEOUT) not in (0, None)
        backbone.processes.pop("ledger")
    log = (folder / "ledger.log").read_text()
    assert "partition counts disagree" in log
    assert f"expects {PARTITIONS} partitions" in log and f"{court} has {PARTITIONS + 3}" in log


def test_the_ledger_makes_its_own_topics_before_faust_starts(kafka_admin: KafkaConnection) -> None:
    """Faust would make the table changelogs itself, late: on a fresh broker it may still see 0
    partitions in one and stop with `PartitionsMismatch`. `prepare` makes them first, compacted,
    with the listing topics' count, and returns only once the cluster shows their partitions."""
    kafka = KafkaSettings.of(
        kafka_admin, namespace=fresh_namespace(), partitions=PARTITIONS, replication_factor=1
    )
    policy = load_policy()
    prepare(kafka, policy)
    own = [changelog(kafka, table) for table in TABLES] + [gaps_topic(kafka)]
    assert partition_counts(kafka_admin, own) == dict.fromkeys(own, PARTITIONS)
    admin = admin_client(kafka_admin)  # held: a client collected mid-request fails its futures
    configs = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, changelog(kafka, t)) for t in TABLES]
    )
    for future in configs.values():
        assert future.result(timeout=30)["cleanup.policy"].value == "compact"
    prepare(kafka, policy)  # again, as every restart does: nothing to make, nothing refused
