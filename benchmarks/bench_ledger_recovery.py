"""How much a `kill -9` of the ledger costs: recovery time and what it re-sends, under steady load.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 python benchmarks/bench_ledger_recovery.py \
        [--listings 20000] [--rate 20] [--kills 5] [--every 8]

Given KAFKA_BOOTSTRAP_SERVERS it connects with the `ACCORD_KAFKA_*` security settings (README
"Security"; a super user, to provision the namespace's principals); without, it starts a secured
local broker of its own. The ledger runs as its own principal. It measures the raw
confluent-kafka produce and consume rate on this broker first, then starts a ledger worker
(`accord ledger run`, RocksDB tables), loads `--listings` listings (so recovery has a table to
recover), and while `--rate` listing events/s stream in (new issues and corrections), kills
the worker with SIGKILL `--kills` times, restarting it at once as a supervisor would. Per crash:

- first handled: from the restart to the first record the new worker writes to `ledger`;
- back to rate: from the restart until every event is again in `ledger` within the pre-crash
  p99 latency (publish -> ledger record) plus 0.5 s, i.e. the backlog of the outage is gone;
- re-sent: records written to `ledger` and `views.*` a second time (restated after re-reading).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from confluent_kafka import Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.core.connection import KafkaConnection
from services.core.events import Event, ListingState
from services.core.kafka import consumer, create_topics, decode_message, producer_config, read_all
from services.core.settings import KafkaSettings
from services.core.topics import KEEP_FOREVER, TopicSpec
from services.localkafka.broker import LocalKafka
from tests.integration.ledger.harness import PARTITIONS, Backbone, wait_for
from tests.support.factory import Ledgerbook

RAW_MESSAGES = 50_000
RAW_SIZE = 700  # about the size of a sealed listing event


def raw_rates(connection: KafkaConnection) -> tuple[float, float]:
    """Messages/s for confluent-kafka alone: produce (acks=all, idempotent) and consume back."""
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    create_topics(connection, [TopicSpec(topic, "", (), KEEP_FOREVER)], PARTITIONS, 1)
    producer, value = Producer(producer_config(connection)), os.urandom(RAW_SIZE)
    started = time.perf_counter()
    for i in range(RAW_MESSAGES):
        while True:
            try:
                producer.produce(topic, value, f"L-{i}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    produced = RAW_MESSAGES / (time.perf_counter() - started)
    started = time.perf_counter()
    count = sum(1 for _ in read_all(connection, [topic], batch=5000))
    consumed = count / (time.perf_counter() - started)
    return produced, consumed


class Tail(threading.Thread):
    """Tails `ledger` from the start: when each (listing, version) was first written (the record's
    CreateTime, stamped by the ledger's producer: a killed worker's last records may be read late)."""

    def __init__(self, connection: KafkaConnection, topic: str) -> None:
        super().__init__(daemon=True)
        self.connection, self.topic = connection, topic
        self.seen: dict[tuple[str, int], float] = {}
        self.records: list[float] = []  # write time of every record
        self.stopping = False

    def run(self) -> None:
        reader = consumer(self.connection, self.connection.group(f"bench-tail-{uuid.uuid4().hex[:6]}"))
        reader.assign([TopicPartition(self.topic, p, 0) for p in range(PARTITIONS)])
        try:
            while not self.stopping:
                for msg in reader.consume(1000, 0.05):
                    if msg.error() is None:
                        state = decode_message(msg).event
                        now = (msg.timestamp()[1] or 0) / 1000
                        assert isinstance(state, ListingState)
                        self.records.append(now)
                        self.seen.setdefault((state.envelope.listing_id, state.envelope.version), now)
        finally:
            reader.close()


class Load(threading.Thread):
    """`rate` listing events/s: new issues and corrections of earlier ones; when each was published."""

    def __init__(self, backbone: Backbone, book: Ledgerbook, rate: float) -> None:
        super().__init__(daemon=True)
        self.backbone, self.book, self.rate = backbone, book, rate
        self.published: dict[tuple[str, int], float] = {}
        self.stopping = False
        self.rng = random.Random(7)

    def next_event(self, i: int) -> Event:
        live = [lid for (lid, _) in self.published]
        if live and self.rng.random() < 0.5:
            return self.book.correct(self.rng.choice(live), legal_basis=f"basis {i}")
        return self.book.issue(f"LOAD-{i:06d}", subject_ref=f"s-load-{i}")

    def run(self) -> None:
        i, gap = 0, 1.0 / self.rate
        while not self.stopping:
            event = self.next_event(i)
            self.backbone.publish([event])
            self.published[(event.envelope.listing_id, event.envelope.version)] = time.time()
            i += 1
            time.sleep(gap)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def latencies(load: Load, tail: Tail, start: float, end: float) -> list[float]:
    return [
        tail.seen[k] - at for k, at in list(load.published.items()) if start <= at < end and k in tail.seen
    ]


def back_to_rate(load: Load, tail: Tail, restart: float, end: float, threshold: float) -> float:
    """Seconds from `restart` until the last event of the outage's backlog reached `ledger`:
    after that, every event published (up to the next kill) arrived within `threshold`."""
    arrivals = [
        seen
        for k, at in list(load.published.items())
        if restart <= (seen := tail.seen.get(k, end)) < end and seen - at > threshold
    ]  # written by the restarted worker, late; what the next kill holds up is the next crash's
    return max(0.0, max(arrivals, default=restart) - restart)


def preload(backbone: Backbone, book: Ledgerbook, count: int, tail: Tail) -> None:
    for start in range(0, count, 1000):
        backbone.publish([book.issue(f"PRE-{i:06d}") for i in range(start, min(count, start + 1000))])
    wait_for(f"{count} preloaded listings in ledger", lambda: len(tail.seen) >= count, 900, every=0.5)


def duplicates(backbone: Backbone, topics: list[str]) -> dict[str, int]:
    """Records of each topic beyond the first of each (key, version)."""
    out = {}
    for topic in topics:
        seen = Counter(
            (m.key(), decode_message(m).event.envelope.version)
            for m in read_all(backbone.connection, [topic])
        )
        out[topic] = sum(n - 1 for n in seen.values())
    return out


def run(connection: KafkaConnection, args: argparse.Namespace) -> None:
    produced, consumed = raw_rates(connection)
    print(f"raw confluent-kafka on this broker: produce {produced:,.0f} msg/s, consume {consumed:,.0f} msg/s "
          f"({RAW_SIZE} B messages, {PARTITIONS} partitions, {connection})")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="accord-bench-recovery-") as tmp:
        folder = args.folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        backbone = Backbone(connection, f"bench{uuid.uuid4().hex[:8]}.", folder)
        tail = Tail(connection, backbone.topics.ledger)
        tail.start()
        try:
            measure(backbone, tail, args)
        finally:
            tail.stopping = True
            backbone.stop_all()


def measure(backbone: Backbone, tail: Tail, args: argparse.Namespace) -> None:
    book = backbone.book()
    start(backbone, args)
    preload(backbone, book, args.listings, tail)
    load = Load(backbone, book, args.rate)
    load.start()
    time.sleep(args.every)
    warm = time.time()
    steady = latencies(load, tail, warm - args.every / 2, warm)
    threshold = percentile(steady, 0.99) + 0.5
    print(f"session timeout {args.session_timeout} s, commit interval {args.commit_interval} s, "
          f"{'dynamic' if args.dynamic else 'static'} group membership")  # fmt: skip
    p50, p99 = (1000 * percentile(steady, q) for q in (0.5, 0.99))
    print(f"load {args.rate:.0f} events/s on {args.listings:,} listings; before any crash: "
          f"publish -> ledger p50 {p50:.0f} ms, p99 {p99:.0f} ms")  # fmt: skip
    dup_before = duplicates(backbone, [backbone.topics.ledger, *views(backbone)])
    restarts: list[float] = []
    kills: list[float] = []
    for _ in range(args.kills):
        kills.append(time.time())
        backbone.kill("ledger", signal.SIGKILL)
        restarts.append(time.time())
        start(backbone, args)
        time.sleep(args.every)
    time.sleep(args.every)
    load.stopping = True
    load.join()
    end = time.time()
    wait_for("every event in ledger", lambda: all(k in tail.seen for k in load.published), 300, every=0.5)
    report(load, tail, restarts, [*kills[1:], end], threshold)
    dup_after = duplicates(backbone, [backbone.topics.ledger, *views(backbone)])
    ledger_dups = dup_after[backbone.topics.ledger] - dup_before[backbone.topics.ledger]
    view_dups = sum(dup_after[t] - dup_before[t] for t in views(backbone))
    print(f"re-sent per crash: {ledger_dups / args.kills:.1f} ledger records, "
          f"{view_dups / args.kills:.1f} view changes ({ledger_dups} and {view_dups} "
          f"over {args.kills} crashes; {len(load.published)} events published under load)")  # fmt: skip


def start(backbone: Backbone, args: argparse.Namespace) -> None:
    backbone.start_ledger(
        store="rocksdb://",
        ACCORD_LEDGER_SESSION_TIMEOUT_S=str(args.session_timeout),
        ACCORD_LEDGER_COMMIT_INTERVAL_S=str(args.commit_interval),
        ACCORD_LEDGER_STATIC_MEMBERSHIP=str(not args.dynamic).lower(),
        ACCORD_LEDGER_LOG_LEVEL=args.log_level,
    )  # fmt: skip


def views(backbone: Backbone) -> list[str]:
    return [backbone.topics.views(a) for a in sorted(backbone.policy.enforcers)]


def report(load: Load, tail: Tail, restarts: list[float], bounds: list[float], threshold: float) -> None:
    """Per crash, from its restart up to the next kill (`bounds`)."""
    firsts: list[float | None] = []
    backs: list[float | None] = []
    for restart, until in zip(restarts, bounds, strict=True):
        first = min((t for t in list(tail.records) if t > restart), default=None)
        firsts.append(None if first is None else first - restart)
        backs.append(back_to_rate(load, tail, restart, until, threshold))
    fmt = ", ".join(f"{x:.1f}" if x is not None else "-" for x in firsts)
    print(f"restart -> first record handled (s): {fmt}")
    fmt = ", ".join(f"{x:.1f}" if x is not None else "-" for x in backs)
    print(f"restart -> back to pre-crash rate, latency <= {threshold:.2f} s again (s): {fmt}")
    during = latencies(load, tail, restarts[0], bounds[-1])
    print(f"publish -> ledger over the crashes: p50 {percentile(during, 0.5):.2f} s, "
          f"p99 {percentile(during, 0.99):.2f} s, max {max(during, default=0):.2f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=20_000, help="preloaded listings (the table size)")
    parser.add_argument("--rate", type=float, default=20.0, help="listing events/s during the crashes")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--every", type=float, default=8.0, help="seconds between kills")
    parser.add_argument("--session-timeout", type=float, default=10.0, help="ACCORD_LEDGER_SESSION_TIMEOUT_S")
    parser.add_argument("--commit-interval", type=float, default=1.0, help="ACCORD_LEDGER_COMMIT_INTERVAL_S")
    parser.add_argument("--dynamic", action="store_true", help="without static group membership")
    parser.add_argument("--log-level", default="warn", help="the worker's (info: Faust's group joins)")
    parser.add_argument("--folder", type=Path, default=None, help="keep the worker's data and log here")
    args = parser.parse_args()
    with ExitStack() as stack:
        run(bench_broker(stack), args)


def bench_broker(stack: ExitStack) -> KafkaConnection:
    """KAFKA_BOOTSTRAP_SERVERS (its super user, from the environment), else a local secured broker
    stopped when `stack` closes."""
    connection: KafkaConnection | None = KafkaSettings().connection
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        broker = LocalKafka(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-kafka-"))))
        stack.callback(broker.stop)
        broker.start()
        connection = broker.connection()  # its super user
    assert connection is not None
    return connection


if __name__ == "__main__":
    main()
