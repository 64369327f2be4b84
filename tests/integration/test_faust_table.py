"""Faust tables work against our Kafka (4.1): a worker process counts words into a
table, declares its own changelog topic, and forwards counts to an output topic.

The worker runs as a separate process, as in production (`python -m ... worker`),
and is stopped by its pid whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

# confluent_kafka.admin's documented names, imported there without `as` or an __all__ (as in services/core)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from services.core.connection import KafkaConnection
from services.core.kafka import admin_client

APP = Path(__file__).with_name("faust_table_app.py")
PARTITIONS = 2  # as faust_table_app.PARTITIONS
WORDS = ["alpha", "beta", "alpha", "gamma", "alpha", "beta"] * 5


@pytest.mark.timeout(180)
def test_faust_worker_counts_into_a_table(
    kafka_admin: KafkaConnection, namespace: str, tmp_path: Path
) -> None:
    admin = admin_client(kafka_admin)
    _declare(admin, [namespace + "words", namespace + "counts"])
    worker, log = _start_worker(kafka_admin, namespace, tmp_path)
    try:
        _produce_words(kafka_admin, namespace + "words")
        records = _read(kafka_admin, namespace + "counts", len(WORDS), worker, log)
    finally:
        _stop(worker)

    by_word: dict[str, list[int]] = {}
    for key, value in records:
        by_word.setdefault(key.decode(), []).append(int(value))
    expected = Counter(WORDS)
    assert {word: seen[-1] for word, seen in by_word.items()} == expected
    assert all(seen == list(range(1, expected[word] + 1)) for word, seen in by_word.items())
    _assert_changelog(admin, kafka_admin, namespace + "wordcount-counts-changelog", expected)


def _declare(admin: AdminClient, topics: list[str]) -> None:
    """Source and sink topics are ours to create: the broker creates none on demand."""
    futures = admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in topics])
    for future in futures.values():
        future.result(timeout=30)


def _start_worker(
    connection: KafkaConnection, namespace: str, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        **connection.environment(),
        "FAUST_TEST_BROKERS": connection.bootstrap,
        "FAUST_TEST_NAMESPACE": namespace,
        "FAUST_TEST_DATADIR": str(tmp_path / "faust-data"),
    }
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, str(APP), "worker", "-l", "warn"],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return worker, log


def _produce_words(connection: KafkaConnection, topic: str) -> None:
    # murmur2 is what Java clients and aiokafka (Faust) use to place keys.
    producer = Producer(connection.client_config(**{"partitioner": "murmur2_random"}))
    for word in WORDS:
        producer.produce(topic, key=word.encode(), value=word.encode())
    assert producer.flush(30) == 0


def _read(
    connection: KafkaConnection, topic: str, count: int, worker: subprocess.Popen[bytes], log: Path
) -> list[tuple[bytes, bytes]]:
    """`count` records of `topic`, failing early (with the worker's log) if it dies."""
    consumer = Consumer(connection.client_config(**{"group.id": "unused",
                         "enable.auto.commit": False}))  # fmt: skip
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    records: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 120
    try:
        while len(records) < count:
            assert worker.poll() is None, f"worker exited:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, (
                f"{len(records)}/{count} counts in 120 s; worker log:\n{log.read_text()[-4000:]}"
            )
            for message in consumer.consume(100, 1.0):
                if message.error() is None:
                    records.append((message.key() or b"", message.value() or b""))
    finally:
        consumer.close()
    return records


def _stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        os.kill(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def _assert_changelog(
    admin: AdminClient, connection: KafkaConnection, topic: str, expected: Counter[str]
) -> None:
    """Faust declared the table's changelog itself, compacted, with the table's
    partitions, and its last record per key is the final count."""
    metadata = admin.list_topics(topic, timeout=10).topics[topic]
    assert metadata.error is None, metadata.error
    assert len(metadata.partitions) == PARTITIONS
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    config = admin.describe_configs([resource])[resource].result(timeout=30)
    assert config["cleanup.policy"].value == "compact"

    # Faust's table keys and values are JSON: b'"alpha"' -> b'15'.
    latest = {json.loads(key): json.loads(value) for key, value in _read_to_end(connection, topic)}
    assert latest == expected


def _read_to_end(connection: KafkaConnection, topic: str) -> list[tuple[bytes, bytes]]:
    """Every record of every partition of `topic`, up to its end offsets now."""
    consumer = Consumer(connection.client_config(**{"group.id": "unused",
                         "enable.auto.commit": False}))  # fmt: skip
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
                for p in range(PARTITIONS)}  # fmt: skip
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends if ends[p]])
        records: list[tuple[bytes, bytes]] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + 30
        while len(done) < PARTITIONS and time.monotonic() < deadline:
            for message in consumer.consume(100, 1.0):
                if message.error() is None:
                    records.append((message.key() or b"", message.value() or b""))
                    partition, offset = message.partition(), message.offset()
                    if partition is not None and offset is not None and offset + 1 >= ends[partition]:
                        done.add(partition)
        assert len(done) == PARTITIONS, f"{topic} not read to its end in 30 s"
        return records
    finally:
        consumer.close()
