"""What Kafka security costs: the same run on a secured and on a PLAINTEXT local broker.

    python benchmarks/bench_security.py [--listings 2000] [--rate 100] [--revocations 20] [--raw 200000]

Starts two local brokers in turn (`accord kafka up` and `accord kafka up --plaintext`, each in
a temporary state directory). On each: the raw confluent-kafka produce and consume rate
(`--raw` 200-byte records, acks=all, lz4), then `bench_propagation`'s end-to-end throughput
(publish -> ledger -> three SQLite copies) and revocation latency under load, with the
ledger and copies running as their own SCRAM principals under the policy's ACLs on the
secured broker. Prints every figure and the secured/plaintext ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_propagation import AGENCIES, latency, throughput, warm_up
from services.core.connection import KafkaConnection
from services.core.kafka import consumer, create_topics, producer_config
from services.core.topics import TopicSpec
from services.localkafka.broker import LocalKafka
from tests.integration.ledger.harness import PARTITIONS, Backbone


@dataclass
class Figures:
    produce: float = 0.0  # records/s
    consume: float = 0.0
    end_to_end: float = 0.0  # listing events/s applied in every copy
    p50: float = 0.0  # revocation, applied in every copy (s)
    p99: float = 0.0


def median(figures: list[Figures]) -> Figures:
    return Figures(
        *(statistics.median(getattr(f, name) for f in figures) for name in Figures.__dataclass_fields__)
    )


def raw_rates(connection: KafkaConnection, count: int, figures: Figures) -> None:
    topic = f"raw-{uuid.uuid4().hex[:8]}"
    create_topics(connection, [TopicSpec(topic, "", ())], PARTITIONS, 1)
    producer, value = Producer(producer_config(connection, **{"linger.ms": 20})), b"x" * 200
    started = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, key=str(i).encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    figures.produce = count / (time.perf_counter() - started)
    reader = consumer(connection, connection.group(f"raw-{uuid.uuid4().hex[:6]}"))
    reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    started, seen = time.perf_counter(), 0
    while seen < count:
        seen += sum(1 for m in reader.consume(10000, 1.0) if m.error() is None)
    figures.consume = count / (time.perf_counter() - started)
    reader.close()
    rates = f"produce {figures.produce:,.0f} records/s, consume {figures.consume:,.0f} records/s"
    print(f"raw confluent-kafka: {rates}")


def end_to_end(admin: KafkaConnection, folder: Path, args: argparse.Namespace, figures: Figures) -> None:
    namespace = f"bench{uuid.uuid4().hex[:8]}."
    backbone = Backbone(admin, namespace, folder)  # on the secured broker: services as their own principals
    stores = {a: f"sqlite:///{folder / f'{a}.db'}" for a in AGENCIES}
    try:
        backbone.start_ledger(store="rocksdb://")
        for agency, url in stores.items():
            backbone.start_copy(agency, url)
        book = backbone.book()
        warm_up(backbone, book, stores)
        listings, figures.end_to_end = throughput(backbone, book, stores, args.listings)
        figures.p50, figures.p99 = latency(backbone, book, listings, stores, args.rate, args.revocations)
    finally:
        backbone.stop_all()


def run(secure: bool, args: argparse.Namespace) -> Figures:
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="accord-bench-security-") as tmp:
        broker = LocalKafka(Path(tmp) / "kafka", secure=secure)
        try:
            broker.start()
            admin = broker.connection()
            assert admin is not None
            mode = "secured: SASL_SSL, SCRAM-SHA-512, ACLs" if secure else "PLAINTEXT"
            print(f"\n=== {mode} ({admin.bootstrap})")
            raw_rates(admin, args.raw, figures)
            end_to_end(admin, Path(tmp), args, figures)
        finally:
            broker.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="background corrections per second")
    parser.add_argument("--revocations", type=int, default=20)
    parser.add_argument("--raw", type=int, default=200_000, help="records for the raw produce/consume rate")
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate secured and plaintext runs, report medians"
    )
    args = parser.parse_args()
    runs: dict[bool, list[Figures]] = {True: [], False: []}
    for i in range(args.rounds):
        for secure in (True, False) if i % 2 == 0 else (False, True):  # neither always goes first
            runs[secure].append(run(secure, args))
    secured, plain = median(runs[True]), median(runs[False])
    print(f"\n=== secured / plaintext (median of {args.rounds} run(s) each)")
    rows = [("produce", "records/s", 1), ("consume", "records/s", 1), ("end_to_end", "listing events/s", 1),
            ("p50", "ms", 1000), ("p99", "ms", 1000)]  # fmt: skip
    for name, unit, scale in rows:
        on, off = getattr(secured, name) * scale, getattr(plain, name) * scale
        print(f"  {name:11} secured {on:10,.1f}  plaintext {off:10,.1f} {unit:17} ratio {on / off:5.2f}")


if __name__ == "__main__":
    main()
