"""Front-line checks over HTTP against a large copy: checks/s and p50/p99 latency, several clients.

    python benchmarks/bench_checks.py [--rows 1000000] [--clients 8] [--seconds 20] [--copy FILE]

Builds a SQLite copy of `--rows` rows straight into the store's tables (each row as the sink would
write it: its columns, bucket, leaf and the digest's accumulators; two listings per subject), starts
`accord copy serve` on it as a real process (uvicorn, the officer's bearer token, the view topic's
lag measured on the broker), then `--clients` processes, each with its own keep-alive connection, ask
`GET /check?subject_ref=` for random subjects (a tenth of them unknown) for `--seconds`. Prints
checks/s and p50/p99/max latency next to raw confluent-kafka produce/consume rates of the same run.
Uses KAFKA_BOOTSTRAP_SERVERS (its super user) or starts a local secured broker.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ledger_recovery import RAW_SIZE, bench_broker, raw_rates
from services.core.connection import KafkaConnection
from services.core.copystore import columns, open_store
from services.core.copystore.sql import schema
from services.core.credentials import FileCredentials
from services.core.digest import DEFAULT_BUCKETS, MODULUS, bucket_of, leaf
from tests.integration.copies.support import PARTITIONS, make_topics
from tests.unit.copies.changes import AGENCY, row

CHUNK = 20_000
LID, SUBJECT = "LISTING-ID-SLOT", "SUBJECT-REF-SLOT"


def build(path: Path, rows: int) -> float:
    """`rows` rows written straight into the copy's tables; seconds taken.

    Every row is the same view row but for its listing id and subject, so its columns and its
    canonical JSON (what `row_hash` hashes) are a template with those two filled in; the first
    row is checked against `columns.row_hash` of the row itself. Rows go in listing-id order
    with the two secondary indexes dropped (re-created, from the store's own DDL, once the rows
    are in: a sort instead of ten million random index inserts), no journal and `synchronous =
    OFF` (a benchmark's throwaway file)."""
    open_store(f"sqlite:///{path}", AGENCY).close()  # the schema, bound to the agency
    indexes = [statement for statement in schema("BLOB") if statement.startswith("CREATE INDEX")]
    template = row(LID, subject_ref=SUBJECT).model_dump(mode="json")
    canonical, cells = json.dumps(template, sort_keys=True, separators=(",", ":")), columns.of_raw(template)
    sums, counts = [0] * DEFAULT_BUCKETS, [0] * DEFAULT_BUCKETS
    started = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = OFF")  # one transaction of millions of rows: not through the WAL
    db.execute("PRAGMA synchronous = OFF")
    db.execute("PRAGMA cache_size = -262144")  # 256 MiB
    db.execute("BEGIN")
    for statement in indexes:
        db.execute(f"DROP INDEX {statement.split()[5]}")
    for start in range(0, rows, CHUNK):
        values = []
        for i in range(start, min(start + CHUNK, rows)):
            lid, ref = f"B-{i:08}", subject(i)
            row_hash = hashlib.sha256(canonical.replace(LID, lid).replace(SUBJECT, ref).encode()).hexdigest()
            if i == 0:
                assert row_hash == columns.row_hash({**template, "listing_id": lid, "subject_ref": ref})
            bucket, value = bucket_of(lid), leaf(lid, 1, "active", row_hash)
            sums[bucket], counts[bucket] = (sums[bucket] + value) % MODULUS, counts[bucket] + 1
            values.append((lid, *cells[1:3], ref, *cells[4:], bucket, f"{value:064x}"))
        db.executemany(f"INSERT INTO copy_rows ({columns.ROW_COLUMNS}, bucket, leaf) VALUES "
                       f"({', '.join('?' * 11)})", values)  # fmt: skip
    for statement in indexes:
        db.execute(statement)
    db.executemany("INSERT INTO copy_buckets (bucket, accumulator, rows) VALUES (?, ?, ?)",
                   [(b, f"{sums[b]:064x}", counts[b]) for b in range(DEFAULT_BUCKETS)])  # fmt: skip
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode = WAL")  # as the store keeps it
    db.close()
    return time.perf_counter() - started


def prepared(path: Path, rows: int) -> Path:
    """A copy of `rows` rows at `path`: the one already there (`--copy`, kept between runs), or built."""
    if path.exists():
        held = sqlite3.connect(path).execute("SELECT COUNT(*) FROM copy_rows").fetchone()[0]
        assert held == rows, f"{path} holds {held:,} rows, not {rows:,}: remove it or give --rows {held}"
        print(f"reusing the copy of {rows:,} rows at {path}")
        return path
    took = build(path, rows)
    print(f"built a copy of {rows:,} rows ({rows // 2:,} subjects) straight into its tables in {took:.1f} s")
    return path


def subject(i: int) -> str:
    return f"s-{i // 2:08}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(
    connection: KafkaConnection, namespace: str, store: Path, folder: Path, workers: int
) -> tuple[subprocess.Popen[bytes], str, str]:
    """`accord copy serve` as a real process (`workers` of them on one port), and an officer's token."""
    credentials = folder / "credentials.yaml"
    token = FileCredentials(credentials).issue(AGENCY, "officer")
    port = free_port()
    env = {**os.environ, **connection.environment(), "ACCORD_NAMESPACE": namespace,
           "ACCORD_PSEUDONYM_KEY": "bench", "ACCORD_CREDENTIALS_FILE": str(credentials)}  # fmt: skip
    command = ["copy", "serve", "--agency", AGENCY, "--store", f"sqlite:///{store}", "--port", str(port),
               "--workers", str(workers)]  # fmt: skip
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


def clients(base: str, token: str, rows: int, count: int, seconds: float) -> tuple[list[float], int, float]:
    """Latencies of every check answered 200 by `count` client processes (a thread each would share
    one interpreter lock and measure the client) for `seconds`, the failures, and the clients' CPU s."""
    with multiprocessing.get_context("spawn").Pool(count) as pool:
        pool.map(ask, [(base, token, rows, n, time.time() + 3.0) for n in range(count)])  # started, warm
        until = time.time() + seconds
        answers = pool.map(ask, [(base, token, rows, n, until) for n in range(count)])
    latencies = sorted(t for each, _, _ in answers for t in each)
    return latencies, sum(failed for _, failed, _ in answers), sum(cpu for _, _, cpu in answers)


def ask(job: tuple[str, str, int, int, float]) -> tuple[list[float], int, float]:
    """One client: random subjects (a tenth unknown) on one keep-alive connection until `until`.

    A plain HTTP/1.1 client on a socket (TCP_NODELAY, as any latency-minded client): httpx cost
    ~900 µs of CPU a request here, more than the server, and the clients share the server's cores."""
    base, token, rows, n, until = job
    rng, latencies, failed, cpu = random.Random(n), [], 0, time.process_time()
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        while time.time() < until:
            ref = subject(rng.randrange(rows)) if rng.random() < 0.9 else f"unknown-{rng.random()}"
            started = time.perf_counter()
            sock.sendall(f"GET /check?subject_ref={ref} HTTP/1.1\r\nHost: {host}\r\n"
                         f"Authorization: Bearer {token}\r\n\r\n".encode())  # fmt: skip
            status, body = _response(reader)
            took = time.perf_counter() - started
            if status == 200 and json.loads(body)["agency"] == AGENCY:
                latencies.append(took)
            else:
                failed += 1
    return latencies, failed, time.process_time() - cpu


def _response(reader: BinaryIO) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length (what uvicorn sends here)."""
    status, length = int(reader.readline().split()[1]), 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, reader.read(length)


def server_cpu(pid: int) -> float:
    """CPU seconds used so far by the server process and its workers (Linux /proc)."""
    pids = [pid, *(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    ticks = 0
    for each in pids:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def run(connection: KafkaConnection, args: argparse.Namespace) -> None:
    produced, consumed = raw_rates(connection)
    print(f"raw confluent-kafka on this broker: produce {produced:,.0f} msg/s, consume {consumed:,.0f} msg/s "
          f"({RAW_SIZE} B messages, {PARTITIONS} partitions)")  # fmt: skip
    print("  (a shared, loaded 2-core machine; the clients run on it too)")
    namespace = f"benchchecks{uuid.uuid4().hex[:6]}."
    make_topics(connection, namespace)
    with tempfile.TemporaryDirectory(prefix="bench-checks-") as tmp:
        folder = Path(tmp)
        copy = prepared(args.copy or folder / "copy.db", args.rows)
        process, base, token = serve(connection, namespace, copy, folder, args.workers)
        try:
            cpu = server_cpu(process.pid)
            latencies, failed, client_cpu = clients(base, token, args.rows, args.clients, args.seconds)
            cpu = server_cpu(process.pid) - cpu
        finally:
            process.terminate()
            process.wait(timeout=30)
    n = len(latencies)
    assert n, "no check answered"
    p50, p99 = latencies[n // 2], latencies[min(n - 1, n * 99 // 100)]
    print(f"  GET /check, {args.workers} server / {args.clients} client processes, {args.seconds:.0f} s: "
          f"{n / args.seconds:,.0f} checks/s, "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms, "
          f"{failed} failed; {n / cpu:,.0f} checks per CPU-second of the server's processes "
          f"({cpu / n * 1e6:,.0f} µs a check; the clients {client_cpu / n * 1e6:,.0f} µs)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--copy", type=Path, default=None, help="keep the built copy here and reuse it")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="`copy serve --workers`: server processes")
    args = parser.parse_args()
    with ExitStack() as stack:
        connection = bench_broker(stack)
        run(connection, args)


if __name__ == "__main__":
    main()
