"""The operator page in a real headless Chromium (Debian's, driven by Playwright), beside a real
reconciler, a real copy sink and the real broker.

A row of civil aviation's copy is deleted by hand while its sink is down: the page shows the
finding open, with the repair the reconciler sent; the listing's timeline tells its story;
once the sink is back and applies the repair, the finding moves to the closed ones, repaired.
A screenshot of each state is saved under tests/artifacts/ (git-ignored); the path is printed.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from services.core.connection import KafkaConnection
from services.core.credentials import FileCredentials
from services.reconciler.board import Board
from services.reconciler.http import PageServer, build_page
from tests.integration.reconciler.live import CA, Live, live, wait_for
from tests.support.prerequisites import missing
from tests.unit.copies.test_copystore_behaviour import execute

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
LISTINGS = 3


@pytest.fixture
def world(kafka_admin: KafkaConnection, namespace: str, tmp_path: Path) -> Iterator[Live]:
    yield from live(kafka_admin, namespace, f"sqlite:///{tmp_path / 'ca.db'}", tmp_path)


@pytest.fixture
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        missing("Debian's chromium is not installed (deploy/bootstrap installs it as root)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def served(world: Live, tmp_path: Path) -> Iterator[tuple[str, FileCredentials, Board]]:
    """The page of a board the world's reconciler fills, on a free port; its base URL."""
    credentials, board = FileCredentials(tmp_path / "tokens.yaml"), Board()
    server = PageServer(build_page(board, credentials, lambda: datetime.now(UTC)), "127.0.0.1", 0)
    server.start()
    try:
        wait_for("the page server to listen", lambda: server.started, 20)
        yield f"http://127.0.0.1:{server.port}/", credentials, board
    finally:
        server.close()


def open_finding(page: Page, listing_id: str) -> str | None:
    """The open finding's 'done' column for `listing_id`, once the page (reloaded) shows it."""
    page.reload()
    row = page.locator(f'#open-findings tr[data-listing="{listing_id}"]')
    return row.get_attribute("data-done") if row.count() else None


def copy_cell(page: Page, column: str) -> str | None:
    """Civil aviation's cell under `column` in the copies table, once the page (reloaded) has the row."""
    page.reload()
    headers = page.locator("#copies th").all_inner_texts()
    row = page.locator(f'#copies tr[data-agency="{CA}"] td')
    return row.nth(headers.index(column)).inner_text() if column in headers and row.count() else None


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_a_stale_copy_shows_up_on_the_page_and_clears_once_repaired(
    world: Live, served: tuple[str, FileCredentials, Board], browser: Browser
) -> None:
    base, credentials, board = served
    token = credentials.issue("backbone", "reconciler")
    assert httpx.get(base).status_code == 401
    officer = credentials.issue(CA, "officer")
    assert httpx.get(base, headers={"Authorization": f"Bearer {officer}"}).status_code == 403

    down = threading.Event()
    world.start_sink(halt=down)
    world.start_reconciler(board=board)
    for i in range(LISTINGS):
        world.record(world.book.issue(f"L-{i}", measures=("flight_ban",)))
    wait_for("the copy to hold every listing", lambda: world.rows() == world.expected())

    page = browser.new_context().new_page()  # signs in as an operator would: the form, then a cookie
    page.goto(f"{base}login")
    page.fill("input[name=token]", token)
    page.click("text=Sign in")
    page.wait_for_url(base)
    wait_for("the copy shown with every change acknowledged", lambda: copy_cell(page, "awaiting ack") == "0")
    assert page.locator("#open-findings").inner_text() == "none"

    down.set()  # the sink stops; then a DBA deletes a row behind its back
    wait_for("the sink to stop", lambda: not any(t.is_alive() for t in world.threads[:1]), 30)
    execute(world.url, "DELETE FROM copy_rows WHERE listing_id = 'L-1'")
    sent = ("repair sent", "escalated")  # "detected" until the repair is read back; repaired once applied
    wait_for("the finding on the page, its repair sent", lambda: open_finding(page, "L-1") in sent, 60)
    row = page.locator('#open-findings tr[data-listing="L-1"]')
    assert row.locator("td").first.inner_text() == "stale_copy"
    assert "findings open" in page.locator('#copies tr[data-agency="civil-aviation"]').inner_text()
    shot(page, "operator-page-finding.png")

    page.fill("input[name=listing_id]", "L-1")
    page.click("text=Show")
    timeline = page.locator("#timeline").inner_text()
    for told in ("ledger: v1 active", "civil-aviation's copy applied v1 (upsert)", "finding stale_copy",
                 "repair sent to civil-aviation: upsert v1"):  # fmt: skip
        assert told in timeline, (told, timeline)

    world.start_sink()  # back: it applies the repair and acknowledges it
    page.goto(base)
    wait_for("the finding to clear", lambda: open_finding(page, "L-1") is None
             and page.locator('#closed-findings tr[data-listing="L-1"]').count() == 1, 60)  # fmt: skip
    assert page.locator('#closed-findings tr[data-listing="L-1"]').get_attribute("data-done") == "repaired"
    # The hand-deleted row's leaf stayed in the copy's running digest: the sink's rolling verification
    # rebuilds that bucket, then the reconciler's re-reads it and closes the digest drift it found.
    copy_row = page.locator('#copies tr[data-agency="civil-aviation"]')
    wait_for("the copy shown consistent", lambda: page.reload() and "consistent" in copy_row.inner_text(), 90)
    charted = page.locator("#ttc text", has_text="civil-aviation · changed")  # the repair's time, charted
    wait_for("the repair's time on the chart", lambda: page.reload() and charted.count() == 1, 10)
    assert world.rows() == world.expected()
    shot(page, "operator-page.png")
