"""Front-line checks over HTTP against a large copy: checks/s and p50/p99 latency, several clients.

    python benchmarks/bench_checks.py [--rows 1000000] [--clients 8] [--seconds 20]

Builds a SQLite copy of `--rows` rows straight into the store's tables (each row as the sink would
write it: its columns, bucket, leaf and the digest's accumulators; two listings per subject), starts
`accord copy serve` on it as a real process (uvicorn, the officer's bearer token, the view topic's
lag measured on the broker), then `--clients` threads, each with its own keep-alive connection, ask
`GET /check?subject_ref=` for random subjects (a tenth of them unknown) for `--seconds`. Prints
checks/s and p50/p99/max latency next to raw confluent-kafka produce/consume rates of the same run.
Uses KAFKA_BOOTSTRAP_SERVERS (its super user) or starts a local secured broker.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ledger_recovery import RAW_SIZE, bench_broker, raw_rates
from services.core.connection import KafkaConnection
from services.core.copystore import columns, open_store
from services.core.credentials import FileCredentials
from services.core.digest import DEFAULT_BUCKETS, MODULUS, bucket_of, leaf
from tests.integration.copies.support import PARTITIONS, make_topics
from tests.unit.copies.changes import AGENCY, row

CHUNK = 20_000


def build(path: Path, rows: int) -> float:
    """`rows` rows written straight into the copy's tables; seconds taken."""
    open_store(f"sqlite:///{path}", AGENCY).close()  # the schema, bound to the agency
    template = row("B-0").model_dump(mode="json")
    sums, counts = [0] * DEFAULT_BUCKETS, [0] * DEFAULT_BUCKETS
    started = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    for start in range(0, rows, CHUNK):
        values = []
        for i in range(start, min(start + CHUNK, rows)):
            raw = {**template, "listing_id": f"B-{i:08}", "subject_ref": subject(i)}
            lid, bucket = raw["listing_id"], bucket_of(raw["listing_id"])
            value = leaf(lid, 1, "active", columns.row_hash(raw))
            sums[bucket], counts[bucket] = (sums[bucket] + value) % MODULUS, counts[bucket] + 1
            values.append((*columns.of_raw(raw), bucket, f"{value:064x}"))
        db.executemany(f"INSERT INTO copy_rows ({columns.ROW_COLUMNS}, bucket, leaf) VALUES "
                       f"({', '.join('?' * 11)})", values)  # fmt: skip
    db.executemany("INSERT INTO copy_buckets (bucket, accumulator, rows) VALUES (?, ?, ?)",
                   [(b, f"{sums[b]:064x}", counts[b]) for b in range(DEFAULT_BUCKETS)])  # fmt: skip
    db.execute("COMMIT")
    db.close()
    return time.perf_counter() - started


def subject(i: int) -> str:
    return f"s-{i // 2:08}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(
    connection: KafkaConnection, namespace: str, store: Path, folder: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    """`accord copy serve` as a real process, and an officer's token it accepts."""
    credentials = folder / "credentials.yaml"
    token = FileCredentials(credentials).issue(AGENCY, "officer")
    port = free_port()
    env = {**os.environ, **connection.environment(), "ACCORD_NAMESPACE": namespace,
           "ACCORD_PSEUDONYM_KEY": "bench", "ACCORD_CREDENTIALS_FILE": str(credentials)}  # fmt: skip
    command = ["copy", "serve", "--agency", AGENCY, "--store", f"sqlite:///{store}", "--port", str(port)]
    log = (folder / "serve.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "services", *command], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return process, base, token
        except httpx.TransportError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, (folder / "serve.log").read_text()
        time.sleep(0.3)


def clients(base: str, token: str, rows: int, count: int, seconds: float) -> tuple[list[float], int]:
    """Latencies of every check answered 200 by `count` threads for `seconds`, and the failures."""
    latencies: list[list[float]] = [[] for _ in range(count)]
    failures = [0] * count
    until = time.monotonic() + seconds

    def ask(n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            while time.monotonic() < until:
                ref = subject(rng.randrange(rows)) if rng.random() < 0.9 else f"unknown-{rng.random()}"
                started = time.perf_counter()
                answer = http.get("/check", params={"subject_ref": ref})
                took = time.perf_counter() - started
                if answer.status_code == 200 and answer.json()["agency"] == AGENCY:
                    latencies[n].append(took)
                else:
                    failures[n] += 1

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(t for each in latencies for t in each), sum(failures)


def run(connection: KafkaConnection, args: argparse.Namespace) -> None:
    produced, consumed = raw_rates(connection)
    print(f"raw confluent-kafka on this broker: produce {produced:,.0f} msg/s, consume {consumed:,.0f} msg/s "
          f"({RAW_SIZE} B messages, {PARTITIONS} partitions)")  # fmt: skip
    print("  (a shared, loaded 2-core machine; the clients run on it too)")
    namespace = f"benchchecks{uuid.uuid4().hex[:6]}."
    make_topics(connection, namespace)
    with tempfile.TemporaryDirectory(prefix="bench-checks-") as tmp:
        folder = Path(tmp)
        took = build(folder / "copy.db", args.rows)
        print(f"built a copy of {args.rows:,} rows ({args.rows // 2:,} subjects) in {took:.1f} s")
        process, base, token = serve(connection, namespace, folder / "copy.db", folder)
        try:
            clients(base, token, args.rows, args.clients, 2.0)  # warm-up: connections, caches
            latencies, failed = clients(base, token, args.rows, args.clients, args.seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
    n = len(latencies)
    assert n, "no check answered"
    p50, p99 = latencies[n // 2], latencies[min(n - 1, n * 99 // 100)]
    print(f"  GET /check, {args.clients} clients, {args.seconds:.0f} s: {n / args.seconds:,.0f} checks/s, "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms, "
          f"{failed} failed")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with ExitStack() as stack:
        connection = bench_broker(stack)
        run(connection, args)


if __name__ == "__main__":
    main()
