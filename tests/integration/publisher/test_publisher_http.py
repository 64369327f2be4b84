"""The HTTP API end to end: a real uvicorn process, a real broker, real status codes; every route
for the court's clerks alone (the server holds the court's key); and a server that has read the
log before its first request."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.credentials import FileCredentials
from services.core.events import ListingState
from services.publisher.client import Publisher
from services.publisher.http import app_from_env
from tests.integration.publisher.conftest import Backbone, closed_port
from tests.support.openapi import assert_every_route_is_protected
from tests.unit.publisher import samples

Server = Callable[[dict[str, str]], str]


@pytest.fixture
def serve() -> Iterator[Server]:
    """Start `uvicorn --factory services.publisher.http:app_from_env` with an environment; stop it by pid."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> str:
        port = closed_port()
        command = [sys.executable, "-m", "uvicorn", "--factory", "services.publisher.http:app_from_env",
                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
        process = subprocess.Popen(command, env={**os.environ, **env})
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"the publisher's HTTP server did not start (exit {process.poll()})")

    try:
        yield start
    finally:
        for process in started:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def tokens(publisher_env: dict[str, str]) -> dict[str, dict[str, str]]:
    """Authorization headers of principals the court's server knows: its clerk, and others."""
    credentials = FileCredentials(Path(publisher_env["ACCORD_CREDENTIALS_FILE"]))
    made = {
        "court": credentials.issue("court", "clerk"),
        "police": credentials.issue("luoshan-police", "clerk"),
        "court-officer": credentials.issue("court", "officer"),
    }
    return {who: {"Authorization": f"Bearer {token}"} for who, token in made.items()}


def issue_body(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body = {
        "agency": "court",
        "national_id": "420102199005171234",
        "full_name": "Yu Zhenhua",
        "birth_date": "1990-05-17",
        "category": "judgment_default",
        "measures": ["flight_ban", "rail_ban"],
        "legal_basis": "SPC Provisions on Restricting High Consumption (2015), art. 3",
        "severity": "serious",
        "case_ref": "(2026) Hu 0101 Zhi 12",
        "notice_served_at": (now - timedelta(days=10)).isoformat(),
        "effective_from": now.isoformat(),
    }
    return {**body, **changes}


def test_the_api_answers_201_409_422_404_and_publishes_each_accepted_command_once(
    serve: Server, publisher_env: dict[str, str], backbone: Backbone, tokens: dict[str, dict[str, str]]
) -> None:
    url = serve(publisher_env)
    with httpx.Client(base_url=url, timeout=30, headers=tokens["court"]) as http:
        created = http.post("/listings", json=issue_body(request_id="req-1"))
        assert created.status_code == 201, created.text
        receipt = created.json()
        retried = http.post("/listings", json=issue_body(request_id="req-1"))
        assert retried.status_code == 201 and retried.json() == {**receipt, "duplicate": True}
        listing = f"/listings/{receipt['listing_id']}"
        now = datetime.now(UTC)
        fix = {
            "agency": "court",
            "expected_version": 1,
            "changes": {"measures": ["flight_ban"]},
            "reason": "x",
        }
        assert http.post(f"{listing}/corrections", json=fix).status_code == 201
        conflict = http.post(f"{listing}/corrections", json=fix)
        assert conflict.status_code == 409 and conflict.json()["code"] == "stale_version"
        objection = http.post(f"{listing}/objections", json={"agency": "court", "grounds": "not me"})
        assert objection.status_code == 201
        resolution = http.post(
            f"{listing}/objections/{objection.json()['objection_id']}/resolution",
            json={"agency": "court", "outcome": "dismissed", "note": "identity confirmed"},
        )
        assert resolution.status_code == 201 and resolution.json()["version"] == 4
        window = {
            "starts_at": (now + timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=3)).isoformat(),
        }
        exemption = {"agency": "court", "measure": "flight_ban", "reason": "medical travel", **window}
        assert http.post(f"{listing}/exemptions", json=exemption).status_code == 201
        revoked = http.post(f"{listing}/revocations", json={"agency": "court", "expected_version": 5,
                                                              "reason": "obligation_fulfilled"})  # fmt: skip
        assert revoked.status_code == 201 and revoked.json()["version"] == 6
        shown = http.get(listing)
        assert shown.status_code == 200 and shown.json()["status"] == "revoked"

        minor = http.post("/listings", json=issue_body(birth_date="2015-01-01"))
        assert minor.status_code == 422 and minor.json()["code"] == "minor_subject"
        malformed = http.post("/listings", json={"agency": "court", "national_id": "420102199005171234"})
        assert malformed.status_code == 422 and malformed.json()["code"] == "invalid_command"
        assert "category" in malformed.json()["reason"] and "420102199005171234" not in malformed.text
        unknown = http.post("/listings/no-such-listing/revocations",
                            json={"agency": "court", "expected_version": 1, "reason": "other"})  # fmt: skip
        assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_listing"
        assert "/listings/{listing_id}/corrections" in http.get("/openapi.json").json()["paths"]
        assert http.get("/docs").status_code == 200
    assert len(backbone.published()) == 6  # issue, correct, object, resolve, exempt, revoke: once each


def test_the_api_answers_503_when_kafka_cannot_be_reached(
    serve: Server, publisher_env: dict[str, str], tokens: dict[str, dict[str, str]]
) -> None:
    down = {
        **publisher_env,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",
        "ACCORD_PUBLISH_TIMEOUT_S": "2",
    }
    url = serve(down)
    answer = httpx.post(f"{url}/listings", json=issue_body(), headers=tokens["court"], timeout=30)
    assert answer.status_code == 503 and answer.json()["code"] == "broker_unavailable"


def test_the_server_reads_the_log_before_it_accepts_a_request(
    backbone: Backbone, publisher_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receipt = backbone.publisher().issue(samples.issue())
    for name, value in publisher_env.items():
        monkeypatch.setenv(name, value)
    app = app_from_env()

    async def started() -> ListingState | None:
        async with app.router.lifespan_context(app):  # what uvicorn runs before it listens
            publisher: Publisher = app.state.publisher
            return publisher.book.state(receipt.listing_id)

    state = asyncio.run(started())
    assert state is not None and state.envelope.version == 1


def test_only_the_courts_clerks_act_and_only_for_the_court(
    serve: Server, publisher_env: dict[str, str], backbone: Backbone, tokens: dict[str, dict[str, str]]
) -> None:
    url = serve(publisher_env)
    with httpx.Client(base_url=url, timeout=30) as http:
        bare = http.post("/listings", json=issue_body())
        assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
        assert bare.json()["code"] == "no_credential"
        wrong = http.post("/listings", json=issue_body(), headers={"Authorization": "Bearer guessed"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "bad_credential"
        assert http.get("/listings/anything").status_code == 401
        posing = http.post("/listings", json=issue_body(agency="luoshan-police"), headers=tokens["court"])
        assert posing.status_code == 403 and posing.json()["code"] == "agency_mismatch"
        assert "luoshan-police" in posing.json()["reason"]
        police = http.post("/listings", json=issue_body(agency="luoshan-police"), headers=tokens["police"])
        assert police.status_code == 403 and police.json()["code"] == "other_agency"  # court's server
        officer = http.post("/listings", json=issue_body(), headers=tokens["court-officer"])
        assert officer.status_code == 403 and officer.json()["code"] == "wrong_role"
        assert backbone.published() == []  # nothing refused was written
        created = http.post("/listings", json=issue_body(), headers=tokens["court"])
        assert created.status_code == 201, created.text
        listing = created.json()["listing_id"]
        posing_fix = {"agency": "luoshan-police", "expected_version": 1, "reason": "other"}
        refused = http.post(f"/listings/{listing}/revocations", json=posing_fix, headers=tokens["court"])
        assert refused.status_code == 403 and refused.json()["code"] == "agency_mismatch"
        shown = http.get(f"/listings/{listing}", headers=tokens["court"])
        assert shown.status_code == 200 and shown.json()["envelope"]["version"] == 1
        document = http.get("/openapi.json").json()
    assert len(backbone.published()) == 1
    assert_every_route_is_protected(document, open_paths=set())
