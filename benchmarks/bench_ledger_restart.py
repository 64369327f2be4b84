"""What a restart of the ledger costs with millions of listings in its tables: time and memory.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 python benchmarks/bench_ledger_restart.py \
        [--listings 1000000 3000000] [--folder DIR]

Without KAFKA_BOOTSTRAP_SERVERS a local secured broker is started (and stopped) for the run. It
measures the raw confluent-kafka produce and consume rate on this broker first (the limit). Then,
for each size, in a fresh namespace: a worker (`accord ledger run`, RocksDB, its own principal)
decides a few real listings and is stopped; its stopped store is grown to `--listings` listings,
written straight into its RocksDB tables through Faust's own RocksDB options, each in its
listing's partition: the `listings` entry (a decided entry with its id replaced by one of the same
length, so its Avro stays valid) and the listing's key in the `expiring` index (an expiry spread
over the coming year, none due during the run). Those rows are not in the tables' changelogs: the
restart reads what is on disk, as a worker restarted on its own data does. The worker is then
restarted and, at once, one listing is published that expires `--due-in` seconds later. Printed:

- start -> first decision (the new listing in `ledger`);
- start -> the due listing's expiry applied (`expired` in `ledger`) and how late after its time;
- peak resident memory (RSS) of the worker over the run, and its CPU seconds.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from benchmarks.bench_ledger import cpu_s, rss_mb
from benchmarks.bench_ledger_recovery import RAW_SIZE, raw_rates
from benchmarks.kafka_limits import broker
from services.core.connection import KafkaConnection
from services.core.events import ListingState
from services.core.partitioner import partition_of
from services.ledger.expiry import index_key
from tests.integration.ledger.harness import PARTITIONS, Backbone, wait_for

TEMPLATE = "G-0000000"  # a real listing the first worker decides; the grown ones have ids of its length
CHUNK = 50_000


def seed(backbone: Backbone) -> None:
    """A worker decides a few real listings (its tables, changelogs and offsets exist), then stops."""
    book = backbone.book()
    backbone.publish([book.issue(TEMPLATE, subject_ref="s-template"), book.issue("G-seed-1")])
    backbone.start_ledger(store="rocksdb://")
    wait_for("the seed listings decided", lambda: backbone.count(backbone.topics.ledger) >= 2, 300)
    time.sleep(2)  # a commit interval: the store's offsets follow the changelog
    backbone.stop_all()


def grow(data: Path, count: int) -> float:
    """Write `count` listings into a stopped worker's `listings` and `expiring` tables; seconds taken."""
    tables = data / "v1" / "tables"
    options = RocksDBOptions()
    dbs = {
        (name, p): options.open(tables / f"{name}-{p}.db")
        for name in ("listings", "expiring")
        for p in range(PARTITIONS)
    }
    started, rng = time.perf_counter(), random.Random(14)
    template = dbs[("listings", partition_of(TEMPLATE.encode(), PARTITIONS))][TEMPLATE.encode()]
    year = datetime.now(UTC) + timedelta(days=1)
    try:
        for first in range(0, count, CHUNK):
            batches = {key: rocksdict.WriteBatch(raw_mode=True) for key in dbs}
            for i in range(first, min(count, first + CHUNK)):
                listing_id = f"T-{i:07d}"
                key, p = listing_id.encode(), partition_of(listing_id.encode(), PARTITIONS)
                batches[("listings", p)].put(key, template.replace(TEMPLATE.encode(), key))
                expires_at = year + timedelta(seconds=rng.randrange(365 * 86400))
                batches[("expiring", p)].put(index_key(expires_at, listing_id), b"1")
            for where, batch in batches.items():
                dbs[where].write(batch)
    finally:
        for db in dbs.values():
            db.close()
    return time.perf_counter() - started


def restart(backbone: Backbone, due_in: float, timeout: float) -> dict[str, float]:
    """Restart the worker on its grown store; publish one listing due `due_in` s later at once."""
    book = backbone.book()
    before = backbone.count(backbone.topics.ledger)
    started = time.time()
    process = backbone.start_ledger(store="rocksdb://")
    due_at = datetime.now(UTC) + timedelta(seconds=due_in)
    backbone.publish([book.issue("G-due", expires_at=due_at)])
    got: dict[str, float] = {"peak_rss_mb": 0.0}

    def expired() -> bool:
        backbone.assert_alive()
        got["peak_rss_mb"] = max(got["peak_rss_mb"], rss_mb(process.pid))
        if "first_s" not in got and backbone.count(backbone.topics.ledger) > before:
            got["first_s"] = time.time() - started
        if "first_s" not in got:
            return False
        states = [s for s in backbone.read(backbone.topics.ledger) if isinstance(s, ListingState)]
        if any(s.envelope.listing_id == "G-due" and s.status == "expired" for s in states):
            got["expired_s"] = time.time() - started
            got["late_s"] = time.time() - due_at.timestamp()
            return True
        return False

    wait_for("the due listing expired after the restart", expired, timeout, every=0.2)
    got["cpu_s"] = cpu_s(process.pid)
    backbone.stop_all()
    return got


def run(connection: KafkaConnection, args: argparse.Namespace, folder: Path) -> None:
    produced, consumed = raw_rates(connection)
    print(f"raw confluent-kafka on this broker: produce {produced:,.0f} msg/s, consume {consumed:,.0f} msg/s "
          f"({RAW_SIZE} B, {PARTITIONS} partitions); a shared, loaded machine: compare ratios")  # fmt: skip
    for count in args.listings:
        backbone = Backbone(connection, f"br{uuid.uuid4().hex[:8]}.", folder / f"n{count}")
        try:
            seed(backbone)
            wrote = grow(backbone.folder / "ledger", count)
            got = restart(backbone, args.due_in, args.timeout)
        finally:
            backbone.stop_all()
        print(f"{count:>11,} listings (written straight into RocksDB in {wrote:.0f} s): restart -> "
              f"first decision {got['first_s']:.1f} s; -> an expiry due {args.due_in:.0f} s after the "
              f"restart applied {got['expired_s']:.1f} s ({got['late_s']:.1f} s after its time); "
              f"peak RSS {got['peak_rss_mb']:.0f} MB; {got['cpu_s']:.1f} CPU s of the worker")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--due-in", type=float, default=10.0, help="the new listing expires this much later")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--folder", type=Path, default=None, help="keep the workers' data and logs here")
    args = parser.parse_args()
    with broker() as connection, tempfile.TemporaryDirectory(prefix="accord-bench-restart-") as tmp:
        run(connection, args, args.folder or Path(tmp))


if __name__ == "__main__":
    main()
