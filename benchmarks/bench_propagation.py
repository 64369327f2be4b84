"""End-to-end propagation: listing topics -> ledger worker -> views -> every copy.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 python benchmarks/bench_propagation.py \
        [--listings 2000] [--rate 1000] [--revocations 20] [--pg postgresql://.../db]

Without KAFKA_BOOTSTRAP_SERVERS a local secured broker is started for the run; the raw
confluent-kafka produce and consume rates on it are printed first.

Starts a ledger worker (RocksDB tables) and one copy sink per agency (SQLite files,
plus railway on PostgreSQL when --pg is given) as real processes, then measures:

1. sustained throughput: a burst of `--listings` issues (each cites flight, rail and
   high-consumption bans, so it reaches all three copies) from the first publish until
   every copy holds every row: listing events/s and view changes applied/s;
2. revocation latency under load: while `--rate` corrections/s stream in (sealed beforehand,
   offered at that pace; the rate achieved is printed), revokes one
   listing every 0.5 s and times each from its publish to its CopyApplied in every copy
   (applied_at, same clock): p50/p99 per copy and for "applied everywhere", and that split at
   the ledger's decision (its revoked state's create time): waiting for and in the ledger, then
   from the decision to the last copy.

The ledger and the sinks run at their deployed settings (`DEPLOYED`), not the suite's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import OFFSET_END, Message, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kafka_limits import broker, raw_consume, raw_produce
from services.copies.settings import CopyOptions
from services.core.copystore import open_store
from services.core.events import CopyApplied, Event, ListingState
from services.core.kafka import consumer, create_topics, decode_message
from services.core.topics import KEEP_FOREVER, TopicSpec
from services.ledger.settings import LedgerOptions
from tests.integration.ledger.harness import PARTITIONS, Backbone, wait_for
from tests.support.factory import Ledgerbook

AGENCIES = ("civil-aviation", "railway", "court")
MEASURES = ("flight_ban", "rail_ban", "high_consumption")
# The services at their own defaults, not as the suite's harness runs them (it re-verifies a copy's
# rows five times as fast, sends digests every 2 s and commits every 0.5 s, to see faults sooner).
DEPLOYED = {
    **{f"ACCORD_LEDGER_{name.upper()}": str(LedgerOptions.model_fields[name].default)
       for name in ("commit_interval_s", "expiry_interval_s")},
    **{f"ACCORD_COPY_{name.upper()}": str(CopyOptions.model_fields[name].default)
       for name in ("digest_interval_s", "verify_rows_per_minute")},
}  # fmt: skip


def rows_in(url: str, agency: str) -> int:
    store = open_store(url, agency)
    try:
        return store.digest().rows
    finally:
        store.close()


def holding(url: str, agency: str, count: int) -> Callable[[], bool]:
    return lambda: rows_in(url, agency) >= count


def states_at_least(backbone: Backbone, count: int) -> Callable[[], float | None]:
    """When the ledger topic holds `count` states: the time it first did."""
    return lambda: time.perf_counter() if backbone.count(backbone.topics.ledger) >= count else None


def raw_limits(backbone: Backbone) -> None:
    """The raw confluent-kafka rates on this broker, now: the limit every figure is compared with."""
    topic = f"{backbone.topics.namespace}raw"
    create_topics(backbone.connection, [TopicSpec(topic, "key", (), KEEP_FOREVER)], PARTITIONS, 1)
    produced = raw_produce(backbone.connection, topic, 100_000)
    consumed = raw_consume(backbone.connection, topic, PARTITIONS, 100_000)
    print(f"raw confluent-kafka, 100,000 records of 400 B: produce {produced:,.0f}/s (acks=all), "
          f"consume {consumed:,.0f}/s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(the machine is shared with other engineers' runs)")  # fmt: skip


def warm_up(backbone: Backbone, book: Ledgerbook, stores: dict[str, str]) -> None:
    """One listing through the whole path, so start-up time is not counted as throughput."""
    backbone.publish([book.issue("WARM-UP", measures=MEASURES)])
    for agency, url in stores.items():
        wait_for(f"{agency} to start", holding(url, agency, 1), 120, every=0.2)


def throughput(
    backbone: Backbone, book: Ledgerbook, stores: dict[str, str], count: int
) -> tuple[list[str], float]:
    """The listings issued, and listing events/s applied in every copy."""
    listings = [f"P-{i:06d}" for i in range(count)]
    events = [book.issue(lid, measures=MEASURES, subject_ref=f"s-{lid}") for lid in listings]
    started = time.perf_counter()
    backbone.publish(events)
    published = time.perf_counter() - started
    ledger_done = wait_for("the ledger", states_at_least(backbone, count + 1), 900, every=0.25) - started
    for agency, url in stores.items():
        wait_for(f"{agency} to hold {count} rows", holding(url, agency, count + 1), 900, every=0.2)
    elapsed = time.perf_counter() - started
    print(f"published {count} listing events in {published:.2f} s ({count / published:,.0f}/s)")
    print(f"ledger alone: {count} events verified, applied and fanned out in {ledger_done:.2f} s "
          f"({count / ledger_done:,.0f}/s)")  # fmt: skip
    print(f"throughput: {count} listing events applied in all {len(stores)} copies in {elapsed:.2f} s "
          f"(the copies' last row {elapsed - ledger_done:.2f} s after the ledger's last state)")  # fmt: skip
    print(f"  = {count / elapsed:,.0f} listing events/s end to end, "
          f"{count * len(stores) / elapsed:,.0f} view changes applied/s across the copies")  # fmt: skip
    return listings, count / elapsed


class Acks(threading.Thread):
    """Reads copies.applied and `ledger` from their current ends: when each copy applied each delete,
    and when the ledger wrote each of the `revoked` listings' revoked state (its record's create
    time, the ledger's clock), which splits a revocation's latency at the ledger's decision."""

    def __init__(self, backbone: Backbone, revoked: list[str]) -> None:
        super().__init__(daemon=True)
        self.reader = consumer(
            backbone.connection, backbone.connection.group(f"bench-{uuid.uuid4().hex[:6]}")
        )
        self.ledger, self.revoked = backbone.topics.ledger, {lid.encode() for lid in revoked}
        topics = [*backbone.topics.all_copies_applied(AGENCIES), self.ledger]
        self.reader.assign([TopicPartition(t, p, OFFSET_END) for t in topics for p in range(PARTITIONS)])
        self.deletes: dict[tuple[str, str], datetime] = {}
        self.decided: dict[str, datetime] = {}
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            for msg in self.reader.consume(500, 0.2):
                if msg.error() is None:
                    self.take(msg)
        self.reader.close()

    def take(self, msg: Message) -> None:
        if msg.topic() == self.ledger:  # only the revoked listings' states are decoded
            if msg.key() in self.revoked:
                state = decode_message(msg).event
                if isinstance(state, ListingState) and state.status == "revoked":
                    written = datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC)
                    self.decided.setdefault(state.envelope.listing_id, written)
            return
        ack = decode_message(msg).event
        if isinstance(ack, CopyApplied) and ack.op == "delete":
            self.deletes.setdefault((ack.copy_agency, ack.envelope.listing_id), ack.applied_at)


def steady_load(book: Ledgerbook, listings: list[str], count: int) -> list[Event]:
    """`count` corrections to listings nobody revokes, sealed before the clock starts (sealing is
    the publisher's cost, not the path's): each chains on the one before it of its listing."""
    return [book.correct(listings[i % len(listings)], legal_basis=f"basis {i}") for i in range(count)]


def background(backbone: Backbone, events: list[Event], rate: float, stop: threading.Event) -> None:
    """Publish `events` at `rate` per second, in slices of 50 ms, until stopped (or out of events)."""
    started, sent, chunk = time.perf_counter(), 0, max(1, int(rate / 20))
    while not stop.is_set() and sent < len(events):
        backbone.publish(events[sent : sent + chunk])
        sent += chunk
        time.sleep(max(0.0, started + sent / rate - time.perf_counter()))
    offered = sent / (time.perf_counter() - started)
    print(f"background load: {sent:,} corrections offered at {offered:,.0f}/s (asked {rate:,.0f}/s)")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(
    backbone: Backbone, book: Ledgerbook, listings: list[str], stores: dict[str, str], rate: float, count: int
) -> tuple[float, float]:
    """Prints p50/p99 per copy; returns p50 and p99 (s) of "applied in every copy"."""
    targets, steady = listings[:count], listings[count:]
    acks = Acks(backbone, targets)
    acks.start()
    stop = threading.Event()
    corrections = steady_load(book, steady, int(rate * (2 + 0.5 * count + 5)))
    load = threading.Thread(target=background, args=(backbone, corrections, rate, stop), daemon=True)
    load.start()
    time.sleep(2)
    sent: dict[str, datetime] = {}
    for lid in targets:
        event = book.revoke(lid)
        sent[lid] = datetime.now(UTC)
        backbone.publish([event])
        time.sleep(0.5)
    wanted = {(agency, lid) for agency in stores for lid in targets}
    wait_for("every revocation applied in every copy", lambda: wanted <= acks.deletes.keys(), 300)
    wait_for("the ledger's revoked states", lambda: set(targets) <= acks.decided.keys(), 30)
    stop.set()
    acks.stopping = True
    load.join()
    print(
        f"revocation latency under {rate:.0f} corrections/s asked, {count} revocations (publish -> applied):"
    )
    per_copy = {a: [(acks.deletes[(a, lid)] - sent[lid]).total_seconds() for lid in targets] for a in stores}
    per_copy["all copies"] = [max(per_copy[a][i] for a in stores) for i in range(len(targets))]
    per_copy["to the decision"] = [(acks.decided[lid] - sent[lid]).total_seconds() for lid in targets]
    per_copy["decision -> all"] = [
        everywhere - decided
        for everywhere, decided in zip(per_copy["all copies"], per_copy["to the decision"], strict=True)
    ]
    for name, seconds in per_copy.items():
        p50, p99, mean = (
            1000 * x for x in (percentile(seconds, 0.5), percentile(seconds, 0.99), statistics.mean(seconds))
        )
        print(f"  {name:15} p50 {p50:6.0f} ms   p99 {p99:6.0f} ms   mean {mean:6.0f} ms")
    everywhere = per_copy["all copies"]
    return percentile(everywhere, 0.5), percentile(everywhere, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=1000.0, help="background corrections per second")
    parser.add_argument("--revocations", type=int, default=20)
    parser.add_argument("--pg", default=None, help="an empty PostgreSQL database for the railway copy")
    args = parser.parse_args()
    with broker() as connection, tempfile.TemporaryDirectory(prefix="accord-bench-") as tmp:
        folder = Path(tmp)
        backbone = Backbone(connection, f"bench{uuid.uuid4().hex[:8]}.", folder)
        stores = {a: f"sqlite:///{folder / f'{a}.db'}" for a in AGENCIES}
        if args.pg:
            stores["railway"] = args.pg
        try:
            backbone.start_ledger(store="rocksdb://", **DEPLOYED)
            for agency, url in stores.items():
                backbone.start_copy(agency, url, **DEPLOYED)
            print("copies: " + ", ".join(f"{a} ({u.split(':')[0]})" for a, u in stores.items()))
            raw_limits(backbone)
            book = backbone.book()
            warm_up(backbone, book, stores)
            listings, _ = throughput(backbone, book, stores, args.listings)
            latency(backbone, book, listings, stores, args.rate, args.revocations)
        finally:
            backbone.stop_all()


if __name__ == "__main__":
    main()
