"""Throughput of `accord publish import`: a generated file of commands through the bulk path.

The file holds `--count` lines: issues, a correction after every tenth issue and a revocation
after every twentieth (each naming its listing by the issue's request id, so it must follow its
issue), and a few bad lines (malformed JSON, a minor). The import runs in this process through
the same function as `accord publish import` (`bulk.import_file`): every line checked by the
rules, sealed and produced without waiting for its verdict; then the ledger's verdicts are
collected, with a real ledger worker (`accord ledger run`) running on the benchmark's topics.

    KAFKA_BOOTSTRAP_SERVERS=… python benchmarks/bench_import.py [--count 20000] [--no-verdicts]

Prints events/s for the publish phase (every line checked, sealed, sent and confirmed by the
broker) and for publish-until-every-verdict, next to the raw confluent-kafka produce and consume
rates (400 B records, acks=all) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kafka_limits import broker, raw_consume, raw_produce
from services.core.kafka import create_topics
from services.core.topics import KEEP_FOREVER, TopicSpec
from services.publisher.bulk import Report
from services.publisher.shards import report_of
from tests.integration.ledger.harness import PARTITIONS, Backbone
from tests.integration.publisher.conftest import environment
from tests.unit.publisher.samples import issue_line

# The CLI under cProfile, timed by the main thread's CPU clock (not disturbed by the machine's load,
# nor counting librdkafka's own threads); the stats are written however the command exits.
PROFILED = """import cProfile, sys, time
from services.cli import main
profile = cProfile.Profile(time.thread_time)
sys.argv = ["accord", *sys.argv[1:]]
try:
    profile.runcall(main)
finally:
    profile.dump_stats({out!r})
"""
CPU: dict[str, float] = {}  # CPU seconds of the import's processes (the CLI and any workers it ran)


def lines(count: int, run: str) -> list[dict[str, Any]]:
    """`count` lines: issues, some corrections and revocations after their issue, a few bad lines."""
    now, made, n = datetime.now(UTC), list[dict[str, Any]](), 0
    while len(made) < count:
        n += 1
        birth = "1990-05-17" if n % 500 else "2015-01-01"  # one in 500 a minor: refused
        made.append(issue_line(n, now, request_id=f"{run}-{n}", birth_date=birth))
        change = {"listing_request_id": f"{run}-{n}"}
        if n % 10 == 0:
            made.append({**change, "command": "correct", "expected_version": 1, "reason": "wrong ban",
                         "changes": {"measures": ["flight_ban"]}})  # fmt: skip
        if n % 20 == 0:
            made.append({**change, "command": "revoke", "expected_version": 2, "reason": "mislisting"})
        if n % 1000 == 0:
            made.append({"malformed": True})
    return made[:count]


def write(folder: Path, made: list[dict[str, Any]]) -> Path:
    path = folder / "import.jsonl"
    with path.open("w") as out:
        for line in made:
            out.write("{not json\n" if line.get("malformed") else json.dumps(line) + "\n")
    return path


def run_import(backbone: Backbone, path: Path, wait: float, workers: int, profile: str = "") -> Report:
    """`accord publish import` as the court's own process (its principal, its key), as a clerk runs it;
    under cProfile (its stats written to `profile`) when given."""
    env = {**os.environ, **environment(backbone, Path(tempfile.mkdtemp()) / "credentials.yaml", "court"),
           "ACCORD_STATE_DIR": tempfile.mkdtemp(prefix="bench-import-")}  # fmt: skip
    entry = (
        [sys.executable, "-c", PROFILED.format(out=profile)]
        if profile
        else [str(Path(sys.executable).parent / "accord")]
    )
    command = [*entry, "publish", "import", str(path), "--wait", str(wait), "--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["import"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode not in (0, 3, 8):
        raise SystemExit(f"the import failed (exit {done.returncode}): {done.stdout[-2000:]}")
    return report_of(json.loads(done.stdout))


def raw_rates(backbone: Backbone, count: int) -> tuple[float, float]:
    topic = f"{backbone.namespace}bench-raw"
    create_topics(backbone.connection, [TopicSpec(topic, "key", (), KEEP_FOREVER)], PARTITIONS, 1)
    produced = raw_produce(backbone.connection, topic, count)
    return produced, raw_consume(backbone.connection, topic, PARTITIONS, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="lines in the file")
    parser.add_argument("--no-verdicts", action="store_true", help="measure the publish phase only")
    parser.add_argument("--workers", type=int, default=1, help="accord publish import --workers")
    parser.add_argument("--profile", default="", help="write the import process's cProfile stats here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, broker() as admin:
        backbone = Backbone(admin, f"bench{uuid.uuid4().hex[:8]}.", Path(folder))
        if not args.no_verdicts:
            backbone.start_ledger()
        try:
            path = write(Path(folder), lines(args.count, uuid.uuid4().hex[:8]))
            started = time.perf_counter()
            report = run_import(backbone, path, 0.5 if args.no_verdicts else 30.0, args.workers, args.profile)
            total = time.perf_counter() - started
            produced, consumed = raw_rates(backbone, 100_000)
        finally:
            backbone.stop_all()
    print_report(args.count, report, total, produced, consumed, not args.no_verdicts)


def print_report(
    count: int, report: Report, total: float, produced: float, consumed: float, ledger: bool
) -> None:
    published = report.published
    print(f"import benchmark: {count} lines, {published} published, {len(report.refused)} refused "
          f"(shared, loaded 2-core machine: compare the ratios)")  # fmt: skip
    print(f"  publish phase        {published / report.publish_s:8.0f} events/s  ({report.publish_s:.1f} s: "
          f"checked, sealed, sent, confirmed by the broker)  "
          f"{published / report.publish_s / produced:6.1%} of raw produce")  # fmt: skip
    if ledger:
        print(f"  until every verdict  {published / total:8.0f} events/s  ({total:.1f} s, a ledger worker "
              f"running; {report.admitted} admitted, {len(report.undecided)} undecided)")  # fmt: skip
    cpu, publishing = CPU.get("import", 0.0), report.publish_cpu_s or float("nan")  # nan: not reported
    print(f"  per CPU-second       {published / publishing:8.0f} events per CPU-s of the publish phase "
          f"({publishing:.1f} CPU-s, every thread of the import's processes); {published / cpu:.0f} "
          f"per CPU-s of the whole run ({cpu:.1f} CPU-s: start-up, verdicts, report too)")  # fmt: skip
    print(f"  raw produce          {produced:8.0f} records/s (confluent-kafka, 400 B, acks=all, same run)")
    print(f"  raw consume          {consumed:8.0f} records/s (same run)")


if __name__ == "__main__":
    main()
