"""Copy sinks draining their view: view changes/s into SQLite and PostgreSQL, batch by batch.

    python benchmarks/bench_copies.py [--changes 50000] [--batch 500] [--pg postgresql://.../db]

Pre-fills `views.civil-aviation` of a fresh namespace with `--changes` generated view changes
(upserts of distinct listings, a fifth of them corrected later, a twentieth revoked), then times
a real `Sink` on the real clients draining them (from `start` until the store's positions reach
the topic's end) into a SQLite file and into PostgreSQL (a throwaway cluster, as the test suite
starts it, when `--pg` is not given), next to raw confluent-kafka produce/consume rates measured
in the same run. Uses KAFKA_BOOTSTRAP_SERVERS (its super user) or starts a local secured broker.
The process keeps none of the generated changes once sent (a sink holds none, and every full
garbage collection walked those 40,000 models), and its garbage collector is settled as
`accord copy run` settles it (`core.collector`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ledger_recovery import RAW_SIZE, bench_broker, raw_rates
from services.copies.clients import kafka_clients
from services.copies.sink import Sink
from services.core import collector
from services.core.connection import KafkaConnection
from services.core.copystore import open_store
from services.core.events import ViewChanged
from services.core.kafka import end_offsets
from tests.conftest import _postgres_bin_dir, _PostgresCluster
from tests.integration.copies.support import PARTITIONS, POLICY, make_topics, send, settings
from tests.unit.copies.changes import AGENCY, delete, row, upsert


def generated(count: int) -> list[ViewChanged]:
    """`count` view changes: issues of distinct listings, then corrections and revocations of some."""
    issues = count * 15 // 20
    changes = [upsert(row(f"B-{i:08}", subject_ref=f"s-{i % 10_007}")) for i in range(issues)]
    changes += [upsert(row(f"B-{i:08}", 2, subject_ref=f"s-{i % 10_007}", case_ref="corrected"))
                for i in range(0, issues, 3)][: count * 4 // 20]  # fmt: skip
    changes += [delete(f"B-{i:08}", 3, subject_ref=f"s-{i % 10_007}") for i in range(1, issues, 7)]
    return changes[:count]


def drain(connection: KafkaConnection, namespace: str, url: str, batch: int) -> tuple[int, float, float]:
    """Changes applied, seconds taken and CPU seconds this process spent (the sink and its Kafka
    clients' threads; not the broker's or PostgreSQL's), from a fresh sink's start to the topic's end."""
    store = open_store(url, AGENCY)
    feed, reporter = kafka_clients(connection, AGENCY, namespace)
    options = {"batch": batch, "digest_interval_s": 5.0}
    sink = Sink(AGENCY, store, settings(connection, namespace, **options), POLICY, feed, reporter)
    ends = {tp.partition: high for tp, high in end_offsets(connection, [sink.topic]).items()}
    collector.settle()  # as `accord copy run` does before its loop
    try:
        started, cpu = time.perf_counter(), time.process_time()
        sink.start()
        while any(store.positions().get(p, 0) < high for p, high in ends.items()):
            sink.poll()
        return sum(ends.values()), time.perf_counter() - started, time.process_time() - cpu
    finally:
        sink.close()
        store.close()


def run(connection: KafkaConnection, args: argparse.Namespace, pg_url: str) -> None:
    produced, consumed = raw_rates(connection)
    print(f"raw confluent-kafka on this broker: produce {produced:,.0f} msg/s, consume {consumed:,.0f} msg/s "
          f"({RAW_SIZE} B messages, {PARTITIONS} partitions)")  # fmt: skip
    print("  (a shared, loaded 2-core machine: compare the ratios to the raw rate, not the figures)")
    namespace = f"benchcopies{uuid.uuid4().hex[:6]}."
    topics = make_topics(connection, namespace)
    started = time.perf_counter()
    send(connection, topics.views(AGENCY), generated(args.changes))  # not kept: a sink holds none of them
    print(f"pre-filled {topics.views(AGENCY)} with {args.changes:,} view changes in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-copies-") as tmp:
        stores = {"SQLite (file, WAL, synchronous=NORMAL)": f"sqlite:///{tmp}/copy.db",
                  "PostgreSQL": pg_url}  # fmt: skip
        for name, url in stores.items():
            count, seconds, cpu = drain(connection, namespace, url, args.batch)
            rate = count / seconds
            print(f"  {name}: {count:,} view changes in {seconds:.1f} s = {rate:,.0f} changes/s "
                  f"({rate / consumed:.1%} of the raw consume rate), batches of {args.batch}; "
                  f"{count / cpu:,.0f} changes per CPU-second of the sink's process")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="ACCORD_COPY_BATCH: changes per transaction")
    parser.add_argument("--pg", default=None, help="a PostgreSQL database URL (else a throwaway cluster)")
    args = parser.parse_args()
    with ExitStack() as stack:
        connection = bench_broker(stack)
        pg_url = args.pg
        if pg_url is None:
            cluster = _PostgresCluster(_postgres_bin_dir())
            stack.callback(cluster.stop)
            pg_url = cluster.start()
            print(
                "PostgreSQL: a throwaway local cluster, fsync=off, synchronous_commit=off (as in the tests)"
            )
        run(connection, args, pg_url)


if __name__ == "__main__":
    main()
