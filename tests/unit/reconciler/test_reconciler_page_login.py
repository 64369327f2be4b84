"""The operator page's sign-in: a browser types the reconciler's token once and keeps it as a cookie."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.core.credentials import FileCredentials
from services.reconciler.board import Board
from services.reconciler.http import SESSION, PageServer, build_page
from tests.support.factory import T0


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[httpx.Client, FileCredentials]]:
    """The page on a real server on a free port (uvicorn in a thread, as `reconcile run --http`)."""
    credentials = FileCredentials(tmp_path / "credentials.yaml")
    server = PageServer(build_page(Board(), credentials, lambda: T0), "127.0.0.1", 0)
    server.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", follow_redirects=False) as client:
            yield client, credentials
    finally:
        server.close()


def test_the_reconcilers_token_signs_in_with_an_httponly_strict_cookie(
    setup: tuple[httpx.Client, FileCredentials],
) -> None:
    client, credentials = setup
    token = credentials.issue("backbone", "reconciler")
    assert client.get("/").status_code == 401
    assert "type=password name=token" in client.get("/login").text

    answer = client.post(
        "/login", content=f"token={token}", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"].lower()
    assert f"{SESSION}=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    client.cookies.clear()
    assert client.get("/", headers={"cookie": f"{SESSION}={token}"}).status_code == 200

    gone = client.post("/logout")
    assert gone.status_code == 303 and f'{SESSION}=""' in gone.headers["set-cookie"]


def test_a_wrong_or_foreign_token_is_refused_on_the_form_and_never_kept(
    setup: tuple[httpx.Client, FileCredentials],
) -> None:
    client, credentials = setup
    form = {"content-type": "application/x-www-form-urlencoded"}
    wrong = client.post("/login", content="token=never-issued", headers=form)
    assert wrong.status_code == 401 and "never issued" in wrong.text and "set-cookie" not in wrong.headers
    officer = credentials.issue("civil-aviation", "officer")
    foreign = client.post("/login", content=f"token={officer}", headers=form)
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
    assert client.get("/", headers={"cookie": f"{SESSION}={officer}"}).status_code == 403
    assert client.post("/login", content="", headers=form).status_code == 401
