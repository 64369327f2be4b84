"""Sustained publish rate and per-call latency of the publisher, for valid commands.

Each call is the whole code path a clerk's command takes: catch up with the ledger's
decisions, check every rule, pseudonymise, seal, produce (idempotent, acks=all), wait
for the broker's confirmation, then for the ledger's verdict (a ledger worker runs, as
a real process, for the benchmark's topics). Commands alternate between issuing a
listing and correcting the listing issued just before it, so the version check is
exercised. For comparison it measures, in the same run, the raw confirmed produce
rate: one message at a time, each waited for, with the same producer settings.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 python benchmarks/bench_publish.py [--count 2000] [--threads 1]

Without KAFKA_BOOTSTRAP_SERVERS a local Kafka is started (and stopped) for the run.
Prints events/s, p50/p99/max latency per admitted call, and how long a restarted
publisher takes to read the ledger back before its first command.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.kafka_limits import broker
from services.core.commands import AnyCommand, Changes, CorrectCommand, IssueCommand
from services.core.connection import KafkaConnection
from services.core.crypto import AgencyKey, Keystore
from services.core.kafka import EventProducer, end_offsets
from services.core.policy import Policy
from services.core.topics import BACKBONE, Topics
from services.publisher.client import Publisher
from tests.integration.ledger.harness import Backbone
from tests.support.factory import Ledgerbook


def issue(n: int, now: datetime, run_id: str) -> IssueCommand:
    return IssueCommand.model_validate(
        {
            "agency": "court",
            "request_id": f"{run_id}-issue-{n}",
            "national_id": f"4201021990{n:08d}",
            "full_name": f"Subject Number{n}",
            "birth_date": date(1990, 5, 17),
            "category": "judgment_default",
            "measures": ["flight_ban", "rail_ban", "high_consumption"],
            "legal_basis": "SPC Provisions on Restricting High Consumption (2015), art. 3",
            "severity": "serious",
            "case_ref": f"(2026) Hu 0101 Zhi {n}",
            "details": {"amount_owed": str(1000 + n)},
            "notice_served_at": now - timedelta(days=10),
            "effective_from": now,
        }
    )


def correction(n: int, listing_id: str, run_id: str) -> CorrectCommand:
    return CorrectCommand(
        agency="court",
        request_id=f"{run_id}-correct-{n}",
        listing_id=listing_id,
        expected_version=1,
        changes=Changes(measures=["flight_ban", "high_consumption"]),
        reason="rail ban listed by mistake",
    )


def commands(count: int, now: datetime, run_id: str) -> list[AnyCommand]:
    """Issue, correct, issue, correct, ...; each correction follows its listing's issue."""
    made: list[AnyCommand] = []
    for n in range(count):
        if n % 2 == 0:
            made.append(issue(n, now, run_id))
        else:
            made.append(correction(n, issue(n - 1, now, run_id).listing_id, run_id))
    return made


def run(publisher: Publisher, plan: list[AnyCommand], threads: int) -> tuple[float, list[float]]:
    """Wall time and per-call latencies; each thread takes issue/correction pairs in order."""
    pairs = [plan[i : i + 2] for i in range(0, len(plan), 2)]

    def timed(pair: list[AnyCommand]) -> list[float]:
        latencies = []
        for command in pair:
            start = time.perf_counter()
            publisher.submit(command)
            latencies.append(time.perf_counter() - start)
        return latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        latencies = [lat for chunk in pool.map(timed, pairs) for lat in chunk]
    return time.perf_counter() - start, latencies


def make_publisher(
    connection: KafkaConnection, topics: Topics, policy: Policy, keystore: Keystore, key: bytes
) -> Publisher:
    signer = AgencyKey("court", keystore.private("court"))
    return Publisher(connection, topics, policy, signer, key, timeout=30.0, decision_wait=60.0)


def raw_rate(backbone: Backbone, count: int) -> float:
    """Events/s of bare confirmed sends, one at a time (the floor under one publisher thread)."""
    unlingered: dict[str, Any] = {"linger.ms": 0}
    producer, book = EventProducer(backbone.connection, **unlingered), Ledgerbook(backbone.keystore)
    topic = backbone.topics.listings(BACKBONE)  # the ledger refuses these (not the backbone's to issue)
    events = [book.issue(f"raw-{n}") for n in range(count)]
    start = time.perf_counter()
    for event in events:
        producer.send_sync(topic, event.envelope.listing_id, event)
    elapsed = time.perf_counter() - start
    producer.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="commands to publish (half issues)")
    parser.add_argument("--threads", type=int, default=1, help="concurrent callers (as the HTTP API has)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, broker() as admin:
        backbone = Backbone(admin, f"bench{uuid.uuid4().hex[:8]}.", Path(folder))
        backbone.start_ledger()
        try:
            key, now = secrets.token_bytes(32), datetime.now(UTC)
            policy, keystore, topics = backbone.policy, backbone.keystore, backbone.topics
            court = backbone.connection_as("court")  # the court's publisher runs as the court
            with make_publisher(court, topics, policy, keystore, key) as publisher:
                run(publisher, commands(20, now, "warm-up"), 1)  # warm-up: connections, the ledger's start
                wall, latencies = run(publisher, commands(args.count, now, "bench"), args.threads)
            restart = time.perf_counter()
            with make_publisher(court, topics, policy, keystore, key) as fresh:
                fresh.current("none")
            cold = time.perf_counter() - restart
            names = sorted(topics.listings(a) for a in policy.issuers)
            in_log = sum(end_offsets(admin, names).values())
            raw = raw_rate(backbone, 1000)
        finally:
            backbone.stop_all()
    report(args, wall, latencies, cold)
    print(f"  events in the log   {in_log:8d}      (expected {args.count + 20}: each command exactly once)")
    print(f"  raw confirmed send  {raw:8.0f} events/s  (confluent-kafka, one message at a time, same run)")


def report(args: argparse.Namespace, wall: float, latencies: list[float], cold: float) -> None:
    ms = sorted(lat * 1000 for lat in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"publisher benchmark: {args.count} valid commands (issue/correct), {args.threads} thread(s)")
    print(f"  sustained rate      {args.count / wall:8.0f} events/s  ({wall:.2f} s)")
    print(f"  latency p50         {statistics.median(ms):8.1f} ms   (admitted by the ledger, per call)")
    print(f"  latency p99         {p99:8.1f} ms")
    print(f"  latency max         {ms[-1]:8.1f} ms")
    print(f"  restart catch-up    {cold:8.2f} s    (a new publisher reads the ledger topic back)")


if __name__ == "__main__":
    main()
