"""`accord copy serve --workers 2`: two processes answering checks on one port from one SQLite copy.

Each worker opens the copy and its lag reader itself; every check answers from the copy's rows,
whichever worker takes it; a store that cannot be opened fails before any worker starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.core.connection import KafkaConnection
from services.core.copystore import open_store
from services.localkafka.broker import free_ports
from tests.integration.copies.support import caught_up, make_topics, open_sink, send
from tests.integration.copies.test_copy_http import KEY, issue_tokens
from tests.unit.copies.changes import AGENCY, row, upsert


def test_two_workers_answer_checks_from_one_copy(
    kafka_admin: KafkaConnection, namespace: str, tmp_path: Path
) -> None:

    url, (port,) = f"sqlite:///{tmp_path}/copy.db", free_ports(1)
    topic = make_topics(kafka_admin, namespace).views(AGENCY)
    send(kafka_admin, topic, [upsert(row(f"L-{i}", subject_ref=f"s-{i}")) for i in range(5)])
    store = open_store(url, AGENCY)
    sink = open_sink(store, kafka_admin, namespace)
    caught_up(sink, kafka_admin)
    sink.close()
    store.close()
    file = tmp_path / "credentials.yaml"
    tokens = issue_tokens(file)
    env = {**os.environ, **kafka_admin.environment(), "ACCORD_NAMESPACE": namespace,
           "ACCORD_PSEUDONYM_KEY": KEY, "ACCORD_CREDENTIALS_FILE": str(file)}  # fmt: skip
    command = ["copy", "serve", "--agency", AGENCY, "--store", url, "--port", str(port), "--workers", "2"]
    process = subprocess.Popen([sys.executable, "-m", "services", *command], env=env, start_new_session=True)
    base, officer = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {tokens['officer']}"}
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "accord copy serve did not start"
            try:
                if httpx.get(f"{base}/health", timeout=10).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        workers = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert len(workers) >= 2, f"expected two worker processes, found {workers}"
        for i in range(20):  # new connections: the kernel spreads them over both workers
            answer = httpx.get(
                f"{base}/check", params={"subject_ref": f"s-{i % 5}"}, headers=officer, timeout=10
            )
            assert answer.status_code == 200
            assert [x["listing_id"] for x in answer.json()["listings"]] == [f"L-{i % 5}"]
            assert not answer.json()["freshness"]["stale"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_a_store_that_cannot_be_opened_fails_before_any_worker_starts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/not-a-db.db"
    (tmp_path / "not-a-db.db").write_bytes(b"this is not a database" * 100)
    command = [
        "copy",
        "serve",
        "--agency",
        AGENCY,
        "--store",
        url,
        "--port",
        str(free_ports(1)[0]),
        "--workers",
        "2",
    ]
    done = subprocess.run([sys.executable, "-m", "services", *command],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0 and "SQLite copy" in done.stderr
