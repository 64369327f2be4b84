"""`accord copy serve` as a real process: the front-line check, with lag measured on the broker, and
the reconciler's probe questions, answered over HTTP exactly as from the database.

Caught up, the copy answers plainly; with a change waiting that it has not applied
for longer than its SLA, the same question gets an answer that says the copy may be
stale and sends the officer to the issuing agency.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from services.core.copystore import Damaged, StoreError, open_store
from services.core.copystore.probe import StoreProbe
from services.core.crypto import pseudonymise
from services.core.digest import DEFAULT_BUCKETS, bucket_of
from services.reconciler.probe import HttpProbe, open_probe
from tests.integration.copies.support import caught_up, make_topics, open_sink, send
from tests.unit.copies.changes import AGENCY, row, upsert
from tests.unit.copies.test_copystore_behaviour import execute

KEY = "http-test-pseudonym-key"
NATIONAL_ID = "110101199003074518"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serve(kafka_bootstrap: str, namespace: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`accord copy serve` on a SQLite copy with a 1 s SLA; yields (base URL, store URL)."""
    url, port = f"sqlite:///{tmp_path}/copy.db", free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "ACCORD_NAMESPACE": namespace,
           "ACCORD_PSEUDONYM_KEY": KEY, "ACCORD_COPY_SLA_S": "1"}  # fmt: skip
    open_store(url, AGENCY).close()
    command = ["copy", "serve", "--agency", AGENCY, "--store", url, "--port", str(port)]
    process = subprocess.Popen([sys.executable, "-m", "services", *command], env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "accord copy serve did not start"
            try:
                httpx.get(f"{base}/health", timeout=10)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base, url
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def test_checks_by_pseudonym_or_national_id_and_freshness_over_http(
    serve: tuple[str, str], kafka_bootstrap: str, namespace: str
) -> None:
    base, url = serve
    topic = make_topics(kafka_bootstrap, namespace).views(AGENCY)
    subject = pseudonymise(NATIONAL_ID, KEY.encode())
    send(kafka_bootstrap, topic, [upsert(row("L-1", subject_ref=subject)), upsert(row("L-2", exempt=True))])
    store = open_store(url, AGENCY)
    sink = open_sink(store, kafka_bootstrap, namespace)
    caught_up(sink, kafka_bootstrap)
    sink.close()
    store.close()

    with httpx.Client(base_url=base, timeout=30) as http:
        by_ref = http.get("/check", params={"subject_ref": subject}).json()
        by_id = http.post("/check", json={"national_id": NATIONAL_ID}).json()
        assert by_ref["listings"] == by_id["listings"]
        assert by_id["restricted"] and by_id["listings"][0]["listing_id"] == "L-1"
        assert by_id["listings"][0]["measures"][0] == {
            "measure": "flight_ban", "in_force": True, "why": "in force", "exemption": None}  # fmt: skip
        assert by_id["freshness"]["lag"] == {"0": 0, "1": 0, "2": 0} and not by_id["freshness"]["stale"]
        assert http.get("/health").json()["stale"] is False

        send(kafka_bootstrap, topic, [upsert(row("L-1", 2, subject_ref=subject))])  # no sink runs now
        time.sleep(1.2)  # past the 1 s SLA since the last applied change
        stale = http.get("/check", params={"subject_ref": subject}).json()
        assert stale["freshness"]["stale"] and sum(stale["freshness"]["lag"].values()) == 1
        assert stale["advice"].startswith("CONFIRM BEFORE ACTING") and "court" in stale["advice"]
        assert http.get("/health").json()["stale"] is True


def test_the_reconciler_gets_the_same_answers_over_http_as_from_the_database(serve: tuple[str, str]) -> None:
    base, url = serve
    store = open_store(url, AGENCY)
    try:
        for offset in range(40):
            store.apply(upsert(row(f"L-{offset}", version=1 + offset % 3)), offset % 3, offset)
        local, remote = StoreProbe(store), open_probe(base, AGENCY)
        assert isinstance(remote, HttpProbe)
        assert remote.digest() == local.digest() and remote.positions() == local.positions() != {}
        bucket = bucket_of("L-7", DEFAULT_BUCKETS)
        assert remote.leaves(bucket, DEFAULT_BUCKETS) == local.leaves(bucket, DEFAULT_BUCKETS) != {}
        assert remote.sub_digest(bucket, DEFAULT_BUCKETS, 16) == local.sub_digest(bucket, DEFAULT_BUCKETS, 16)
        before = remote.digest()
        store.apply(upsert(row("L-7", version=9)), 1, 40)
        assert remote.digest() == local.digest() != before  # answered from the rows as they are now
        with pytest.raises(StoreError, match="422"):
            remote.leaves(bucket, DEFAULT_BUCKETS + 1)  # a split that does not refine the copy's buckets
        assert remote.misplaced() == local.misplaced() == {}
        store.record_damage([Damaged("L-3", "row 'L-3' is not a valid view row")], datetime.now(UTC))
        execute(url, "UPDATE copy_rows SET status = 'revoked', bucket = NULL WHERE listing_id = 'L-3'")
        assert remote.damaged() == local.damaged() and list(remote.damaged()) == ["L-3"]
        assert remote.misplaced() == local.misplaced() and list(remote.misplaced()) == ["L-3"]
    finally:
        store.close()
    with pytest.raises(StoreError, match="did not answer"):
        HttpProbe(f"http://127.0.0.1:{free_port()}", AGENCY, timeout_s=2).digest()
