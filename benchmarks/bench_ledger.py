"""How fast the ledger drains a pre-filled stream: one worker, then two workers in one group.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 python benchmarks/bench_ledger.py [--events 20000]

Without KAFKA_BOOTSTRAP_SERVERS a local secured broker is started (and stopped) for the run.
It measures the raw confluent-kafka produce and consume rate on this broker first (the limit).
Then it generates `--events` sealed listing events (issues of new listings, a share of them
followed by a correction: every check runs, signature, chain, order and rules), writes them
straight to the listing topics of two fresh namespaces with one idempotent producer, and lets
`accord ledger run` (RocksDB tables, its own principal) drain them: one worker on the first
namespace, two workers in one group on the second. A run ends when every event's decision is
in `ledger`; events/s counts from the first decision to the last (start-up apart, printed
too), and RSS is each worker's peak resident memory while it drained.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benchmarks.bench_ledger_recovery import RAW_SIZE, raw_rates
from benchmarks.kafka_limits import broker
from services.core.connection import KafkaConnection
from services.core.events import Event
from services.core.kafka import consumer, read_all
from services.ledger.worker import HEALTH_FILE
from tests.integration.ledger.harness import PARTITIONS, Backbone, wait_for
from tests.support.factory import Ledgerbook

HERE = Path(__file__).resolve().parent


def generate(book: Ledgerbook, count: int, corrected: float) -> list[Event]:
    """`count` valid events: issues, each followed by a correction with probability `corrected`."""
    rng, events, i = random.Random(14), list[Event](), 0
    while len(events) < count:
        listing_id = f"B-{i:07d}"
        events.append(book.issue(listing_id, subject_ref=f"s-bench-{i}"))
        if len(events) < count and rng.random() < corrected:
            events.append(book.correct(listing_id, legal_basis=f"corrected basis {i}"))
        i += 1
    return events


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) / 1024


@dataclass
class Drain:
    """One drain: when the workers started, their first and last decision, the CPU seconds they
    used meanwhile (so a loaded machine's share of a core is told apart from the ledger's cost),
    and peak RSS per worker."""

    workers: int
    events: int
    started: float
    first: float
    last: float
    cpu: float
    rss: list[float]
    batches: int = 0  # batches the workers handled (their last health report's count), 0: unknown

    @property
    def rate(self) -> float:
        return self.events / max(self.last - self.first, 1e-9)

    def line(self) -> str:
        rate = self.rate
        return (
            f"{self.workers} worker{'s' if self.workers > 1 else ' '}: {rate:8,.0f} listing events/s "
            f"({self.events:,} events in {self.last - self.first:.1f} s from the first decision; "
            f"start -> first decision {self.first - self.started:.1f} s); "
            f"{self.events / max(self.cpu, 1e-9):,.0f} events per CPU second of the workers; "
            f"peak RSS {', '.join(f'{r:.0f}' for r in self.rss)} MB"
            + (f"; {self.events / self.batches:,.1f} events a batch" if self.batches else "")
        )


def decided_at(backbone: Backbone) -> list[float]:
    """When each record of `ledger` was written (CreateTime, stamped by the worker's producer)."""
    return [(m.timestamp()[1] or 0) / 1000 for m in read_all(backbone.connection, [backbone.topics.ledger])]


def start_under(
    backbone: Backbone, name: str, script: Path, args: list[str], **env: str
) -> subprocess.Popen[bytes]:
    """A process of this folder's `script` with the backbone's environment (the admin's connection
    unless `env` names another), stopped by the backbone's `stop_all` like its own."""
    log = (backbone.folder / f"{name}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, str(script), *args], cwd=backbone.folder, env=backbone.env(**env),
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    backbone.processes[name] = process
    return process


def start_worker(backbone: Backbone, n: int, profile: Path | None) -> subprocess.Popen[bytes]:
    """Ledger worker `n` (RocksDB tables); with `profile`, under cProfile (`profiled.py`)."""
    if profile is None:
        return backbone.start_ledger(store="rocksdb://", name=f"ledger-{n}")
    where = {
        "ACCORD_LEDGER_DATA_DIR": str(backbone.folder / f"ledger-{n}"),
        "ACCORD_LEDGER_STORE": "rocksdb://",
    }
    args = [str(profile), "ledger", "run"]
    return start_under(backbone, f"ledger-{n}", HERE / "profiled.py", args, **where, **backbone.as_("ledger"))


def drain(
    backbone: Backbone, workers: int, events: int, timeout: float, profile: Path | None = None
) -> Drain:
    """Start `workers` ledger workers on `backbone` and wait until `ledger` holds every decision."""
    started = time.time()
    pids = [start_worker(backbone, n, profile).pid for n in range(workers)]
    peak, cpu_at_first = [0.0] * workers, 0.0
    watcher = consumer(backbone.connection, backbone.connection.group("bench-watch"))
    parts = [TopicPartition(backbone.topics.ledger, p) for p in range(PARTITIONS)]

    def done() -> bool:
        nonlocal cpu_at_first
        backbone.assert_alive()
        for i, pid in enumerate(pids):
            peak[i] = max(peak[i], rss_mb(pid))
        decided = sum(watcher.get_watermark_offsets(tp, timeout=10)[1] for tp in parts)
        cpu_at_first = cpu_at_first or (decided and sum(cpu_s(pid) for pid in pids))
        return decided >= events

    try:
        wait_for(f"{events} decisions in {backbone.topics.ledger}", done, timeout, every=0.5)
    finally:
        watcher.close()
    cpu = sum(cpu_s(pid) for pid in pids) - cpu_at_first
    time.sleep(1.5)  # a tick or two: each worker's health report counts every batch
    backbone.stop_all()
    stamps = decided_at(backbone)
    batches = sum(batches_of(backbone.folder / f"ledger-{n}" / HEALTH_FILE) for n in range(workers))
    return Drain(workers, events, started, min(stamps), max(stamps), cpu, peak, batches)


def batches_of(report: Path) -> int:
    """How many batches a worker handled, as its last health report counts them (0 if none)."""
    try:
        return int(json.loads(report.read_text()).get("batches", 0))
    except (OSError, ValueError):
        return 0


def noop(backbone: Backbone, events: int, timeout: float) -> Drain:
    """Faust's ceiling: `ledger_noop.py` reads the same listing topics in the same batches, deciding
    nothing (as the admin: its own group, from the start), until it has read `events` messages."""
    report = backbone.folder / "noop.json"
    started = time.time()
    process = start_under(backbone, "noop", HERE / "ledger_noop.py", [str(events), str(report)])

    def done() -> bool:
        backbone.assert_alive()
        return report.exists()

    wait_for(f"the no-op agent reading {events} messages", done, timeout, every=0.5)
    peak = rss_mb(process.pid)
    backbone.stop_all()
    took = json.loads(report.read_text())
    return Drain(0, took["events"], started, took["first"], took["last"], took["cpu"], [peak])


def top_lines(stats: Path, count: int = 15) -> str:
    """The profile's `count` functions that took most of the main thread's CPU themselves."""
    text = io.StringIO()
    pstats.Stats(str(stats), stream=text).sort_stats("tottime").print_stats(count)
    return text.getvalue()


def run(connection: KafkaConnection, args: argparse.Namespace, folder: Path) -> None:
    produced, consumed = raw_rates(connection)
    backbones = [Backbone(connection, f"bl{uuid.uuid4().hex[:8]}.", folder / name) for name in ("one", "two")]
    book = Ledgerbook(backbones[0].keystore, now=backbones[0].book().now)
    started = time.perf_counter()
    events = generate(book, args.events, args.corrected)
    sealed = time.perf_counter() - started
    for backbone in backbones[1:]:  # every namespace trusts the same keys
        backbone.keystore, backbone.policy = backbones[0].keystore, backbones[0].policy
    for backbone in backbones:
        backbone.publish(events)
    print(f"raw confluent-kafka on this broker: produce {produced:,.0f} msg/s, consume {consumed:,.0f} msg/s "
          f"({RAW_SIZE} B, {PARTITIONS} partitions); a shared, loaded machine: compare ratios")  # fmt: skip
    print(f"{len(events):,} sealed events generated in {sealed:.1f} s and written straight to listings.court "
          f"of two namespaces ({args.corrected:.0%} of listings corrected once)")  # fmt: skip
    for workers, backbone in zip((1, 2), backbones, strict=False):
        if workers not in args.workers:
            continue
        profile = args.profile if workers == 1 else None
        result = drain(backbone, workers, len(events), args.timeout, profile)
        print(
            f"{result.line()}; {result.rate / consumed:.1%} of raw consume"
            + (" (under cProfile)" if profile else "")
        )
        if profile:
            print(top_lines(profile))
    if not args.no_noop:
        result = noop(backbones[0], len(events), args.timeout)
        print(f"no-op Faust agent (reads and acks, decides nothing): {result.rate:8,.0f} messages/s; "
              f"{result.events / max(result.cpu, 1e-9):,.0f} per CPU second of its process; "
              f"{result.rate / consumed:.1%} of raw consume")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="listing events to pre-fill")
    parser.add_argument("--corrected", type=float, default=0.25, help="share of listings corrected once")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="which drains to run")
    parser.add_argument("--profile", type=Path, default=None, help="run the 1-worker drain under cProfile")
    parser.add_argument("--no-noop", action="store_true", help="skip the no-op Faust agent's drain")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a drain may take")
    parser.add_argument("--folder", type=Path, default=None, help="keep the workers' data and logs here")
    args = parser.parse_args()
    with broker() as connection, tempfile.TemporaryDirectory(prefix="accord-bench-ledger-") as tmp:
        run(connection, args, args.folder or Path(tmp))


if __name__ == "__main__":
    main()
