"""What restarting a dead node costs an `acks=all` producer: only the missing node, or the whole cluster.

    python benchmarks/bench_degraded_restart.py [--seconds 10]

Starts a secured three-node local cluster (`accord kafka up --nodes 3`, fixed ports, temporary state),
measures the raw confluent-kafka produce and consume rate, then runs a prober that sends one record
at a time to a topic with replication factor 3 (min.insync.replicas 2, acks=all) and records how long
each waits for its confirmation. It kills node 3 with SIGKILL, waits until the cluster has fenced it,
and restarts it the way `kafka up` now does (only the missing node); then kills it again and restarts
the way `kafka up` used to (every node stopped and started). Prints the longest and p99 wait of each
phase: the figure the issue saw was 16 s with the old way.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ledger_recovery import raw_rates
from services.core.connection import KafkaConnection
from services.core.kafka import admin_client, create_topics, producer_config
from services.core.topics import KEEP_FOREVER, TopicSpec
from services.localkafka.broker import LocalKafka, LocalKafkaError, free_base_port

TOPIC = "bench-degraded"


class Prober(threading.Thread):
    """One acks=all record at a time; the wait for each confirmation, by the phase it was sent in."""

    def __init__(self, connection: KafkaConnection) -> None:
        super().__init__(daemon=True)
        self.producer = Producer(producer_config(connection, **{"linger.ms": 0}))
        self.phase, self.waits = "healthy", dict[str, list[float]]()
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            phase, started = self.phase, time.perf_counter()
            self.producer.produce(TOPIC, b"x" * 200, b"probe")
            self.producer.flush(120)
            self.waits.setdefault(phase, []).append(time.perf_counter() - started)
            time.sleep(0.02)


def until_brokers(connection: KafkaConnection, count: int) -> None:
    admin = admin_client(connection)
    while len(admin.list_topics(timeout=10).brokers) != count:
        time.sleep(0.2)


def kill_node(cluster: LocalKafka, connection: KafkaConnection, prober: Prober) -> None:
    prober.phase = "node 3 down"
    os.kill(cluster.alive_nodes()[3], signal.SIGKILL)
    until_brokers(connection, 2)
    time.sleep(2)


def restart(name: str, prober: Prober, seconds: float, action: Callable[[], object]) -> float:
    prober.phase = name
    started = time.perf_counter()
    action()
    took = time.perf_counter() - started
    time.sleep(seconds)
    return took


def whole_restart(cluster: LocalKafka) -> None:
    """What `kafka up` did before: stop every node, then start them all (again while a just-closed
    port is still held: a loaded machine may take a moment to release one)."""
    cluster.stop()
    for _ in range(30):
        try:
            cluster.start()
            return
        except LocalKafkaError:
            time.sleep(1)
    cluster.start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="probing after each restart")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cluster = LocalKafka(Path(folder) / "kafka", nodes=3, base_port=free_base_port(3))
        try:
            cluster.start()
            connection = cluster.connection()
            assert connection is not None
            produced, consumed = raw_rates(connection)
            create_topics(connection, [TopicSpec(TOPIC, "", (), KEEP_FOREVER)], 3, 3)
            prober = Prober(connection)
            prober.start()
            time.sleep(args.seconds)
            kill_node(cluster, connection, prober)
            only = restart("restart: only the missing node", prober, args.seconds, cluster.start)
            kill_node(cluster, connection, prober)
            whole = restart(
                "restart: every node (the old way)", prober, args.seconds, partial(whole_restart, cluster)
            )
            prober.stopping = True
            prober.join(timeout=150)
        finally:
            cluster.stop()
    print("machine shared by eight engineers (2 cores, loaded): compare ratios, not absolutes")
    print(f"raw confluent-kafka, 3 nodes: produce {produced:,.0f} msg/s, consume {consumed:,.0f} msg/s")
    print(f"restart took: only the missing node {only:.1f} s; every node {whole:.1f} s")
    print(f"{'phase':36} {'records':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>9}")
    for phase, waits in prober.waits.items():
        ordered = sorted(waits)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"{phase:36} {len(ordered):>8} {statistics.median(ordered) * 1000:>8.1f} "
              f"{p99 * 1000:>8.1f} {ordered[-1] * 1000:>9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
