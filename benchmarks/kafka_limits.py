"""What the benchmarks share: the broker to run on, and the raw Kafka rates measured in the same run.

Every figure a benchmark prints is compared with what bare confluent-kafka does on the same
broker in the same run (the machine is shared and loaded: ratios compare, absolute figures
do not), with core's producer settings (idempotent, acks=all, lz4).
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Producer, TopicPartition

from services.core.connection import KafkaConnection
from services.core.kafka import consumer, producer_config
from services.core.settings import KafkaSettings


@contextmanager
def broker() -> Iterator[KafkaConnection]:
    """The environment's cluster (security from ACCORD_KAFKA_*), else a local secured one."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield KafkaSettings().connection
        return
    from services.localkafka.broker import LocalKafka

    # `timeout` (and a supervisor) end a benchmark with SIGTERM, which by default ends Python without
    # running `finally`: the local broker would outlive it. As SystemExit, the broker is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory() as folder:
        local = LocalKafka(Path(folder))
        try:
            local.start()
            admin = local.connection()
            assert admin is not None
            yield admin
        finally:
            local.stop()


def raw_produce(connection: KafkaConnection, topic: str, count: int, size: int = 400) -> float:
    """Records/s of bare, batched, confirmed sends of `size`-byte records (keys spread over partitions)."""
    producer = Producer(producer_config(connection, **{"linger.ms": 20}))
    value = secrets.token_bytes(size)
    start = time.perf_counter()
    for n in range(count):
        while True:
            try:
                producer.produce(topic, value=value, key=f"raw-{n}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise SystemExit("the raw producer did not confirm every record")
    return count / (time.perf_counter() - start)


def raw_consume(connection: KafkaConnection, topic: str, partitions: int, count: int) -> float:
    """Records/s of a bare consumer reading `count` records of `topic` from the start, in batches."""
    reader = consumer(connection, connection.group("bench-raw"))
    reader.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    read, start = 0, time.perf_counter()
    try:
        while read < count:
            read += sum(1 for m in reader.consume(num_messages=10_000, timeout=1.0) if m.error() is None)
        return read / (time.perf_counter() - start)
    finally:
        reader.close()
