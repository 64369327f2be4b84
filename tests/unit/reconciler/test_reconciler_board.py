"""The operator page's record and rendering, without a browser: what each finding's case says was
done, what the copies table and the chart show, and that nothing read from the log is served raw."""

from __future__ import annotations

import uuid
from datetime import timedelta

from services.core.events import Finding, ViewChanged
from services.reconciler import findings, page
from services.reconciler.board import Board
from services.reconciler.consistency import Summary
from services.reconciler.repair import REPAIR_NAMESPACE
from tests.support.factory import T0
from tests.unit.reconciler.support import World, applied

CA = "civil-aviation"


def detection(listing_id: str = "L-1") -> Finding:
    return findings.make(
        findings.STALE_COPY, f"d-{listing_id}", CA, listing_id, 1, "row deleted", T0, since=T0
    )


def repair_of(change: ViewChanged, detected: Finding) -> ViewChanged:
    env = change.envelope.model_copy(
        update={"agency": "reconciler", "event_id": str(uuid.uuid5(REPAIR_NAMESPACE, detected.finding_id))}
    )
    return change.model_copy(update={"envelope": env})


def test_a_case_goes_from_detected_to_repair_sent_to_escalated_to_repaired(world: World) -> None:
    [change, *_] = world.record(world.book.issue("L-1", measures=("flight_ban",)), T0, deliver=False)
    board, found = Board(), detection()
    board.note(found, T0)
    assert [(c.detection.kind, c.done) for c in board.snapshot().open] == [("stale_copy", "detected")]
    board.note(repair_of(change, found), T0)
    assert [c.done for c in board.snapshot().open] == ["repair sent"]
    board.note(findings.escalated(found, T0 + timedelta(seconds=60)), T0)
    assert [c.done for c in board.snapshot().open] == ["escalated"]
    board.note(findings.repaired(found, T0 + timedelta(seconds=90)), T0)
    snap = board.snapshot()
    assert snap.open == [] and [(c.done, c.closed_at) for c in snap.closed] == [
        ("repaired", T0 + timedelta(seconds=90))
    ]
    assert [line for _, line in board.timeline("L-1")][-1].startswith("finding repaired")


def test_the_copies_table_shows_last_apply_lag_and_pending_and_the_chart_every_family(world: World) -> None:
    [change] = world.record(world.book.issue("L-1", measures=("flight_ban",)), T0, deliver=False)
    board = Board()
    board.note(applied(change, 0, T0), T0)
    times = {(CA, "change"): Summary(3, 0.5, 2.0, 2.0), (CA, "changed"): Summary(1, 4.0, 4.0, 4.0)}
    board.figures(T0, {CA: 2, "railway": 0}, {CA: 5, "railway": 0}, times)
    html = page.overview(board.snapshot(), T0 + timedelta(seconds=30))
    never, ok = "<span class=muted>never</span>", "<span class=ok>consistent</span>"
    cells = ["civil-aviation", ok, "30.0 s ago", never, "", "5", "2"]
    assert '<tr data-agency="civil-aviation">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" in html
    assert "civil-aviation · change (3)" in html and "civil-aviation · changed (1)" in html
    assert 'width="310.0"' in html and 'width="155.0"' in html  # the longest p99 spans 640 - 250 - 80 px


def test_what_the_log_says_is_escaped_on_the_page() -> None:
    board = Board()
    board.note(detection("<script>alert(1)</script>"), T0)
    html = page.overview(board.snapshot(), T0)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    listing = page.listing("<b>x</b>", board.timeline("<b>x</b>"), [], T0)
    assert "<b>x</b>" not in listing
