"""Health and metrics on the real stack, scraped by a real Prometheus server (Debian's package).

A publisher server, the ledger, civil aviation's copy sink and the reconciler run as the
processes `accord` starts (each as its own Kafka principal, each with `--ops`); a Prometheus
subprocess scrapes their `/metrics` every second. The test publishes listings through the
publisher's HTTP API (one refused by a rule), writes one forged event to a listing topic, and
asks Prometheus's HTTP API for the numbers it caused; a row deleted from the copy by hand shows as
a finding and a repair there. Then it locks the copy's database by hand, as an adversary or a
careless operator would: the sink stops making progress and its `/health`
turns 503, and 200 again once the lock is gone. A publisher whose ledger does not run turns 503
once its commands stay undecided, and 200 when the ledger rules. Every service logs JSON
(`ACCORD_LOG_FORMAT=json` or `--log-json`), and every line of their logs parses as one JSON object.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.connection import KafkaConnection
from services.core.credentials import FileCredentials
from services.core.kafka import end_offsets
from services.core.sealing import seal
from services.localkafka.broker import free_ports
from tests.integration.ledger.harness import Backbone, wait_for
from tests.support.prerequisites import missing

CA = "civil-aviation"
TIMEOUT = 120.0  # a loaded, shared machine: generous waits, never timed assertions
ISSUED = 3


@dataclass
class Stack:
    backbone: Backbone
    publisher: str  # the publisher's API
    ops: dict[str, str]  # service -> its ops endpoint
    prometheus: str
    store: Path  # civil aviation's SQLite copy
    clerk: dict[str, str]  # the court clerk's Authorization header

    def query(self, expr: str) -> float | None:
        """The value of an instant query that yields one series (None: no series yet)."""
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def reaches(self, expr: str, want: float) -> None:
        """Wait until Prometheus answers `want` to `expr`; fail with what it last answered."""
        seen: list[float | None] = []

        def equal() -> bool:
            self.backbone.assert_alive()
            seen.append(self.query(expr))
            return seen[-1] == want

        try:
            wait_for(f"{expr} == {want}", equal, TIMEOUT, every=1.0)
        except AssertionError as e:
            raise AssertionError(f"{e}; Prometheus last said {seen[-1:]}\n{self.backbone.logs()}") from e

    def health(self, service: str) -> tuple[int, dict[str, Any]]:
        answer = httpx.get(f"{self.ops[service]}/health", timeout=30)
        return answer.status_code, answer.json()


def start_prometheus(folder: Path, targets: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus")
    if binary is None:
        missing("prometheus is not installed (deploy/bootstrap installs Debian's package as root)")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "accord", "static_configs": [{"targets": targets}]}],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    (port,) = free_ports(1)
    log = (folder / "prometheus.log").open("ab")
    process = subprocess.Popen(
        [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (folder / "prometheus.log").read_text()[-3000:]
        try:
            return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for("prometheus ready", ready, 60)
    return process, url


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def publisher_env(backbone: Backbone, credentials: Path) -> dict[str, str]:
    return {
        **backbone.as_("court"),
        "ACCORD_SIGNING_KEY_FILE": str(backbone.keystore.key_file("court")),
        "ACCORD_CREDENTIALS_FILE": str(credentials),
        "ACCORD_PSEUDONYM_KEY": "metrics-test-key",
        "ACCORD_DECISION_WAIT_S": "60",
    }


def answering(url: str, backbone: Backbone) -> Callable[[], bool]:
    def up() -> bool:
        backbone.assert_alive()
        try:
            httpx.get(url, timeout=2)
            return True
        except httpx.TransportError:
            return False

    return up


@pytest.fixture(scope="module")
def stack(kafka_admin: KafkaConnection, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("metrics")
    backbone = Backbone(kafka_admin, f"t{uuid.uuid4().hex[:10]}.", folder)
    store = folder / "civil-aviation.db"
    names = ("ledger", "copy", "reconciler", "publisher", "publisher-api")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    ops = {name: f"http://127.0.0.1:{port}" for name, port in ports.items() if name != "publisher-api"}
    credentials = folder / "credentials.yaml"
    clerk = FileCredentials(credentials).issue("court", "clerk")
    prometheus = None
    try:
        backbone.start_ledger(ACCORD_OPS_ADDR=f"127.0.0.1:{ports['ledger']}", ACCORD_LOG_FORMAT="json")
        backbone.start("copy", ["copy", "run", "--agency", CA, "--store", f"sqlite:///{store}",
                                "--ops", f"127.0.0.1:{ports['copy']}", "--log-json"],
                       ACCORD_COPY_SLA_S="2", **backbone.as_(CA))  # fmt: skip
        backbone.start("reconciler", ["reconcile", "run", "--copy", f"{CA}=sqlite:///{store}",
                                      "--ops", f"127.0.0.1:{ports['reconciler']}"],
                       ACCORD_RECONCILE_LISTING_SLA_S="60", ACCORD_RECONCILE_CHECK_INTERVAL_S="0.5",
                       ACCORD_RECONCILE_ANTIENTROPY_INTERVAL_S="1", ACCORD_LOG_FORMAT="json",
                       **backbone.as_("reconciler"))  # fmt: skip
        backbone.start("publisher", ["publish", "serve", "--port", str(ports["publisher-api"]),
                                     "--ops", f"127.0.0.1:{ports['publisher']}"],
                       ACCORD_LOG_FORMAT="json", **publisher_env(backbone, credentials))  # fmt: skip
        for name, url in ops.items():
            wait_for(f"{name}'s ops endpoint", answering(f"{url}/health", backbone), TIMEOUT)
        api = f"http://127.0.0.1:{ports['publisher-api']}"
        wait_for("the publisher's API", answering(f"{api}/docs", backbone), TIMEOUT)
        prometheus, prometheus_url = start_prometheus(
            folder, [url.removeprefix("http://") for url in ops.values()]
        )
        yield Stack(backbone, api, ops, prometheus_url, store, {"Authorization": f"Bearer {clerk}"})
    finally:
        if prometheus is not None:
            stop(prometheus)
        backbone.stop_all()


def issue_body(birth_date: str = "1990-05-17") -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "agency": "court", "national_id": "420102199005171234", "full_name": "Yu Zhenhua",
        "birth_date": birth_date, "category": "judgment_default", "measures": ["flight_ban", "rail_ban"],
        "legal_basis": "SPC Provisions on Restricting High Consumption (2015), art. 3", "severity": "serious",
        "case_ref": f"(2026) {uuid.uuid4().hex[:6]}", "effective_from": now.isoformat(),
        "notice_served_at": (now - timedelta(days=10)).isoformat(),
    }  # fmt: skip


def test_prometheus_scrapes_the_numbers_the_test_caused(stack: Stack) -> None:
    with httpx.Client(base_url=stack.publisher, timeout=90, headers=stack.clerk) as http:
        for _ in range(ISSUED):
            admitted = http.post("/listings", json=issue_body())
            assert admitted.status_code == 201, admitted.text
        minor = http.post("/listings", json=issue_body(birth_date="2015-01-01"))
        assert minor.status_code == 422 and minor.json()["code"] == "minor_subject"
    backbone = stack.backbone
    forged = seal(
        backbone.book().issue(f"F-{uuid.uuid4().hex[:6]}"), "", backbone.keystore.private("tax-bureau")
    )
    backbone.publish([forged])

    stack.reaches('accord_events_handled_total{service="publisher",outcome="admitted"}', ISSUED)
    stack.reaches('accord_events_refused_total{service="publisher",reason="minor_subject"}', 1)
    stack.reaches('accord_events_handled_total{service="ledger",outcome="admitted"}', ISSUED)
    stack.reaches('accord_events_refused_total{service="ledger",reason="bad_signature"}', 1)
    stack.reaches(f'accord_copy_changes_applied_total{{agency="{CA}"}}', ISSUED)
    stack.reaches(f'accord_copy_apply_latency_seconds_count{{agency="{CA}"}}', ISSUED)
    stack.reaches(f'accord_time_to_consistency_seconds_count{{agency="{CA}",family="change"}}', ISSUED)
    stack.reaches(f'sum(accord_consumer_lag{{service="copy-{CA}"}})', 0)
    stack.reaches('sum(accord_consumer_lag{service="ledger"})', 0)
    stack.reaches('accord_findings_open{kind="stale_copy"}', 0)
    stack.reaches(f'accord_comparisons_total{{agency="{CA}"}} > bool 0', 1)
    for service in ("publisher", "ledger", f"copy-{CA}", "reconciler"):
        stack.reaches(f'accord_healthy{{service="{service}"}}', 1)
    for service in ("ledger", "copy", "reconciler", "publisher"):
        status, body = stack.health(service)
        assert status == 200 and body["healthy"], body
    assert stack.health("ledger")[1]["handled"] == ISSUED + 1  # the forged event too: handled, refused


def test_a_copy_that_stops_making_progress_answers_503_and_recovers(stack: Stack) -> None:
    """A hand-held lock on the copy's database blocks the sink's writes (it waits, then would
    crash so a supervisor restarts it): while it waits, work is pending and nothing advances."""
    backbone = stack.backbone
    view = backbone.topics.views(CA)
    before = sum(end_offsets(backbone.connection, [view]).values())
    lock = sqlite3.connect(stack.store, timeout=30, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        with httpx.Client(base_url=stack.publisher, timeout=90, headers=stack.clerk) as http:
            assert http.post("/listings", json=issue_body()).status_code == 201
        in_view = lambda: sum(end_offsets(backbone.connection, [view]).values()) > before  # noqa: E731
        wait_for("the change in the view", in_view, TIMEOUT)

        def unhealthy() -> dict[str, Any] | None:
            status, body = stack.health("copy")
            return body if status == 503 else None

        body = wait_for("the copy's /health to turn 503", unhealthy, 8, every=0.5)
        # blocked before its fetch saw the change, the sink knows of no pending work: its loop is stuck
        assert body["pending"] >= 1 or any("loop has not come round" in r for r in body["reasons"])
        assert any("not making progress" in r or "SLA" in r for r in body["reasons"])
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_for("the copy's /health to be 200 again", lambda: stack.health("copy")[0] == 200, TIMEOUT)
    backbone.assert_alive()


def by_hand(store: Path, sql: str, listing_id: str) -> list[Any]:
    """Run one statement on the copy's database as an operator with a SQLite shell would."""
    with closing(sqlite3.connect(store, timeout=30)) as db, db:
        return db.execute(sql, (listing_id,)).fetchall()


def rows(store: Path, listing_id: str) -> int:
    return int(by_hand(store, "SELECT count(*) FROM copy_rows WHERE listing_id = ?", listing_id)[0][0])


def test_a_row_deleted_by_hand_shows_as_a_finding_and_a_repair_in_prometheus(stack: Stack) -> None:
    with httpx.Client(base_url=stack.publisher, timeout=90, headers=stack.clerk) as http:
        admitted = http.post("/listings", json=issue_body())
        assert admitted.status_code == 201, admitted.text
    listing_id = admitted.json()["listing_id"]
    wait_for("the listing in the copy", lambda: rows(stack.store, listing_id) == 1, TIMEOUT)
    repairs = stack.query(f'sum(accord_repairs_total{{agency="{CA}"}})') or 0.0
    deleted = by_hand(stack.store, "DELETE FROM copy_rows WHERE listing_id = ? RETURNING 1", listing_id)
    assert len(deleted) == 1

    stack.reaches(f'sum(accord_repairs_total{{agency="{CA}"}}) > bool {repairs}', 1)
    stack.reaches('sum(accord_findings_total{kind="repaired"}) > bool 0', 1)
    wait_for("the repaired row", lambda: rows(stack.store, listing_id) == 1, TIMEOUT)
    stack.reaches("sum(accord_findings_open)", 0)  # the detection closed once the repair was acknowledged


def test_every_service_logs_one_json_object_per_line(stack: Stack) -> None:
    stack.reaches('accord_events_handled_total{service="ledger",outcome="admitted"} > bool 0', 1)
    for name in ("ledger", "copy", "reconciler", "publisher"):
        lines = [line for line in (stack.backbone.folder / f"{name}.log").read_text().splitlines() if line]
        assert lines, f"{name} logged nothing"
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"{name} logged a line that is not JSON: {line!r}") from None
        assert all({"time", "level", "logger", "message"} <= record.keys() for record in records), name
    reconciler = (stack.backbone.folder / "reconciler.log").read_text().splitlines()
    assert any(json.loads(line)["message"].startswith("replayed the log") for line in reconciler if line)


def test_a_publisher_whose_ledger_does_not_decide_answers_503_until_it_does(
    kafka_admin: KafkaConnection, tmp_path: Path
) -> None:
    backbone = Backbone(kafka_admin, f"t{uuid.uuid4().hex[:10]}.", tmp_path)  # no ledger yet
    credentials = tmp_path / "credentials.yaml"
    clerk = {"Authorization": f"Bearer {FileCredentials(credentials).issue('court', 'clerk')}"}
    api, ops = free_ports(2)
    env = {**publisher_env(backbone, credentials), "ACCORD_DECISION_WAIT_S": "1"}  # unhealthy after 3 s
    backbone.start("publisher", ["publish", "serve", "--port", str(api), "--ops", f"127.0.0.1:{ops}"], **env)
    health = f"http://127.0.0.1:{ops}/health"
    try:
        wait_for("the publisher's API", answering(f"http://127.0.0.1:{api}/docs", backbone), TIMEOUT)
        with httpx.Client(base_url=f"http://127.0.0.1:{api}", timeout=90, headers=clerk) as http:
            undecided = http.post("/listings", json=issue_body())
            assert undecided.status_code == 202, undecided.text
            stalled = wait_for("503", lambda: httpx.get(health, timeout=30).status_code == 503, TIMEOUT)
            assert stalled
            body = httpx.get(health, timeout=30).json()
            assert body["pending"] == 1 and "not making progress" in body["reasons"][0], body
            assert body["undecided"] == 1 and body.get("decided") is None

            backbone.start_ledger()
            ruled = lambda: http.get(undecided.headers["location"]).status_code == 200  # noqa: E731
            wait_for("the ledger's verdict", ruled, TIMEOUT)
        answer = httpx.get(health, timeout=30)
        assert answer.status_code == 200 and answer.json()["pending"] == 0, answer.text
        scraped = httpx.get(f"http://127.0.0.1:{ops}/metrics", timeout=30).text
        assert 'accord_events_handled_total{outcome="undecided",service="publisher"} 1.0' in scraped
    finally:
        backbone.stop_all()
