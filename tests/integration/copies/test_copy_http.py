"""`accord copy serve` as a real process: the front-line check, with lag measured on the broker, and
the reconciler's probe questions, answered over HTTP exactly as from the database; each to its own
principal alone (an officer of the copy's agency; the reconciler).

Caught up, the copy answers plainly; with a change waiting that it has not applied
for longer than its SLA, the same question gets an answer that says the copy may be
stale and sends the officer to the issuing agency.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from services.core.connection import KafkaConnection
from services.core.copystore import Damaged, StoreError, open_store
from services.core.copystore.probe import StoreProbe
from services.core.credentials import FileCredentials
from services.core.crypto import pseudonymise
from services.core.digest import DEFAULT_BUCKETS, bucket_of
from services.core.topics import BACKBONE
from services.localkafka.broker import free_ports
from services.reconciler.probe import HttpProbe, open_probe
from tests.integration.copies.support import caught_up, make_topics, open_sink, send
from tests.support.openapi import assert_every_route_is_protected
from tests.unit.copies.changes import AGENCY, row, upsert
from tests.unit.copies.test_copystore_behaviour import execute

KEY = "http-test-pseudonym-key"
NATIONAL_ID = "110101199003074518"


@dataclass(frozen=True)
class Served:
    base: str
    store: str
    tokens: dict[str, str]  # officer, railway-officer, clerk, reconciler

    def bearer(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


def issue_tokens(path: Path) -> dict[str, str]:
    credentials = FileCredentials(path)
    return {
        "officer": credentials.issue(AGENCY, "officer"),
        "railway-officer": credentials.issue("railway", "officer"),
        "clerk": credentials.issue(AGENCY, "clerk"),
        "reconciler": credentials.issue(BACKBONE, "reconciler"),
    }


@pytest.fixture
def serve(kafka_admin: KafkaConnection, namespace: str, tmp_path: Path) -> Iterator[Served]:
    """`accord copy serve` on a SQLite copy with a 1 s SLA, and tokens its credentials file knows."""
    url, (port,) = f"sqlite:///{tmp_path}/copy.db", free_ports(1)
    tokens = issue_tokens(tmp_path / "credentials.yaml")
    env = {**os.environ, **kafka_admin.environment(), "ACCORD_NAMESPACE": namespace,
           "ACCORD_PSEUDONYM_KEY": KEY, "ACCORD_COPY_SLA_S": "1",
           "ACCORD_CREDENTIALS_FILE": str(tmp_path / "credentials.yaml")}  # fmt: skip
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
        yield Served(base, url, tokens)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def test_checks_by_pseudonym_or_national_id_and_freshness_over_http(
    serve: Served, kafka_admin: KafkaConnection, namespace: str
) -> None:
    base, url = serve.base, serve.store
    topic = make_topics(kafka_admin, namespace).views(AGENCY)
    subject = pseudonymise(NATIONAL_ID, KEY.encode())
    send(kafka_admin, topic, [upsert(row("L-1", subject_ref=subject)), upsert(row("L-2", exempt=True))])
    store = open_store(url, AGENCY)
    sink = open_sink(store, kafka_admin, namespace)
    caught_up(sink, kafka_admin)
    sink.close()
    store.close()

    with httpx.Client(base_url=base, timeout=30, headers=serve.bearer("officer")) as http:
        by_ref = http.get("/check", params={"subject_ref": subject}).json()
        by_id = http.post("/check", json={"national_id": NATIONAL_ID}).json()
        assert by_ref["listings"] == by_id["listings"]
        assert by_id["restricted"] and by_id["listings"][0]["listing_id"] == "L-1"
        assert by_id["listings"][0]["measures"][0] == {
            "measure": "flight_ban", "in_force": True, "why": "in force", "exemption": None}  # fmt: skip
        assert by_id["freshness"]["lag"] == {"0": 0, "1": 0, "2": 0} and not by_id["freshness"]["stale"]
        assert http.get("/health").json()["stale"] is False
        assert http.get("/health").status_code == 200

        send(kafka_admin, topic, [upsert(row("L-1", 2, subject_ref=subject))])  # no sink runs now
        time.sleep(1.2)  # past the 1 s SLA since the last applied change
        stale = http.get("/check", params={"subject_ref": subject}).json()
        assert stale["freshness"]["stale"] and sum(stale["freshness"]["lag"].values()) == 1
        assert stale["advice"].startswith("CONFIRM BEFORE ACTING") and "court" in stale["advice"]
        assert http.get("/health").json()["stale"] is True
        assert http.get("/health").status_code == 503  # behind its SLA: unhealthy, not merely up


def test_the_reconciler_gets_the_same_answers_over_http_as_from_the_database(serve: Served) -> None:
    base, url = serve.base, serve.store
    store = open_store(url, AGENCY)
    try:
        for offset in range(40):
            store.apply(upsert(row(f"L-{offset}", version=1 + offset % 3)), offset % 3, offset)
        local, remote = StoreProbe(store), open_probe(base, AGENCY, token=serve.tokens["reconciler"])
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
        HttpProbe(f"http://127.0.0.1:{free_ports(1)[0]}", AGENCY, timeout_s=2).digest()


def test_checks_answer_only_the_agencys_officers_and_the_probe_only_the_reconciler(serve: Served) -> None:
    with httpx.Client(base_url=serve.base, timeout=30) as http:
        question = {"subject_ref": "s-anyone"}
        bare = http.get("/check", params=question)
        assert bare.status_code == 401 and bare.json()["code"] == "no_credential"
        assert bare.headers["www-authenticate"] == "Bearer"
        forged = http.get("/check", params=question, headers={"Authorization": "Bearer not-a-token"})
        assert forged.status_code == 401 and forged.json()["code"] == "bad_credential"
        wrong_scheme = http.get(
            "/check", params=question, headers={"Authorization": f"Basic {serve.tokens['officer']}"}
        )
        assert wrong_scheme.status_code == 401
        railway = http.post(
            "/check", json={"national_id": NATIONAL_ID}, headers=serve.bearer("railway-officer")
        )
        assert railway.status_code == 403 and railway.json()["code"] == "other_agency"
        for who in ("clerk", "reconciler"):
            refused = http.get("/check", params=question, headers=serve.bearer(who))
            assert refused.status_code == 403 and refused.json()["code"] == "wrong_role", who
        assert http.get("/check", params=question, headers=serve.bearer("officer")).status_code == 200
        for path in ("/probe/digest", "/probe/positions", "/probe/misplaced", "/probe/damaged"):
            assert http.get(path).status_code == 401
            for who in ("officer", "clerk", "railway-officer"):
                assert http.get(path, headers=serve.bearer(who)).status_code == 403, (path, who)
            assert http.get(path, headers=serve.bearer("reconciler")).status_code == 200
        assert http.get("/health").status_code in (200, 503)  # freshness alone, no personal data: open
        with pytest.raises(StoreError, match="401"):
            HttpProbe(serve.base, AGENCY).digest()  # a reconciler without its token
        document = http.get("/openapi.json").json()
    assert_every_route_is_protected(document, open_paths={"/health"})
