"""`GET /check` is answered in front of FastAPI (`FrontLine`): it must answer exactly as FastAPI's
declaration of it would (the same guard, 401/403 bodies, 422 for a missing subject) and as
`POST /check` does, while OpenAPI still documents it. The app is driven in-process (no server) on a
real SQLite copy and a real credentials file; tests/integration/copies/test_copy_http.py runs it
under uvicorn."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.copies.http import FrontLine, build_http
from services.core.copystore import open_store
from services.core.credentials import FileCredentials
from services.core.crypto import pseudonymise
from services.core.httpauth import SCHEME
from tests.unit.copies.changes import AGENCY, T0, row, upsert

KEY = b"test-key"
NATIONAL_ID = "420102199001011234"
NOW = T0 + timedelta(days=1)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Http, dict[str, str]]]:
    store = open_store(f"sqlite:///{tmp_path}/copy.db", AGENCY)
    store.apply(upsert(row("L-1", subject_ref=pseudonymise(NATIONAL_ID, KEY))), 0, 0)
    credentials = FileCredentials(tmp_path / "credentials.yaml")
    principals = [
        ("officer", AGENCY, "officer"),
        ("clerk", AGENCY, "clerk"),
        ("railway", "railway", "officer"),
    ]
    tokens = {who: credentials.issue(agency, role) for who, agency, role in principals}
    yield Http(build_http(store, lambda positions: {0: 0}, 300.0, KEY, lambda: NOW, credentials)), tokens
    store.close()


class Http:
    """Requests to the ASGI app in this process, through httpx's own ASGI transport."""

    def __init__(self, app: FrontLine | FastAPI) -> None:
        self.app = app

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Any) -> httpx.Response:
        return self.request("POST", path, **options)

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        async def ask() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://copy") as client:
                return await client.request(method, path, **options)

        return asyncio.run(ask())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_get_check_answers_as_post_check_does(served: tuple[Http, dict[str, str]]) -> None:
    http, tokens = served
    ref = pseudonymise(NATIONAL_ID, KEY)
    got = http.get("/check", params={"subject_ref": ref}, headers=bearer(tokens["officer"]))
    posted = http.post("/check", json={"national_id": NATIONAL_ID}, headers=bearer(tokens["officer"]))
    assert got.status_code == posted.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.json() == posted.json()
    assert got.json()["restricted"] and got.json()["listings"][0]["listing_id"] == "L-1"


def test_get_check_refuses_as_the_guard_does(served: tuple[Http, dict[str, str]]) -> None:
    http, tokens = served
    question = {"subject_ref": "s-1"}
    missing = http.get("/check", params=question)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json()["code"] == "no_credential"
    assert (
        http.get("/check", params=question, headers=bearer("never-issued")).json()["code"] == "bad_credential"
    )
    assert http.get("/check", params=question, headers={"Authorization": "Basic x"}).status_code == 401
    assert http.get("/check", params=question, headers=bearer(tokens["clerk"])).json()["code"] == "wrong_role"
    other = http.get("/check", params=question, headers=bearer(tokens["railway"]))
    assert other.status_code == 403 and other.json()["code"] == "other_agency"
    unasked = http.get("/check", headers=bearer(tokens["officer"]))
    assert unasked.status_code == 422
    assert unasked.json()["detail"][0]["loc"] == ["query", "subject_ref"]


def test_a_copy_that_cannot_be_read_still_answers_and_says_so(
    served: tuple[Http, dict[str, str]], tmp_path: Path
) -> None:
    http, tokens = served
    with sqlite3.connect(tmp_path / "copy.db") as db:
        db.execute("DROP TABLE copy_positions")
    answered = http.get("/check", params={"subject_ref": "s-1"}, headers=bearer(tokens["officer"]))
    assert answered.status_code == 200 and answered.json()["advice"].startswith("COPY DAMAGED")


def test_openapi_still_documents_get_check(served: tuple[Http, dict[str, str]]) -> None:
    http, _ = served
    operation = http.get("/openapi.json").json()["paths"]["/check"]["get"]
    assert operation["security"] == [{SCHEME: []}]
    assert [p["name"] for p in operation["parameters"]] == ["subject_ref"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "CheckAnswer"
    )


def test_the_front_line_answers_in_the_bytes_of_the_fastapi_route(
    served: tuple[Http, dict[str, str]],
) -> None:
    http, tokens = served
    assert isinstance(http.app, FrontLine)
    route = Http(http.app.app)  # the FastAPI app alone: its declaration of GET /check answers
    ref = pseudonymise(NATIONAL_ID, KEY)
    queries = [
        f"subject_ref={ref}",
        "subject_ref=",
        f"subject_ref=s-1&subject_ref={ref}",
        "subject_ref=a%2Bb",
    ]
    headers = [bearer(tokens["officer"]), {"Authorization": f"bearer  {tokens['officer']} "}, {}]
    for query in queries:
        for header in headers:
            front, behind = (
                http.get(f"/check?{query}", headers=header),
                route.get(f"/check?{query}", headers=header),
            )
            assert (front.status_code, front.content) == (behind.status_code, behind.content), (query, header)
            assert front.headers["content-type"] == behind.headers["content-type"]
