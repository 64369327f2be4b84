"""Acknowledgements: every view change must be applied within its SLA, revocations sooner;
a copy merely behind within its SLA is never reported, and each overdue change is reported once."""

from __future__ import annotations

from datetime import timedelta

from services.core.events import ViewChanged
from services.core.listing import evolve
from services.core.policy import load_policy
from services.core.views import view_change
from services.reconciler.acks import AckTracker
from services.reconciler.findings import missing_ack
from tests.support.factory import T0, Ledgerbook
from tests.unit.reconciler.support import SLA, applied

S = timedelta(seconds=1)


def changes(book: Ledgerbook, listing_id: str = "L-1") -> tuple[ViewChanged, ViewChanged]:
    """The civil-aviation upsert of an issued listing, then the delete of its revocation."""
    policy = load_policy()
    issued = evolve(None, book.issue(listing_id))
    revoked = evolve(issued, book.revoke(listing_id))
    upsert = view_change(None, issued, "civil-aviation", policy, T0)
    delete = view_change(issued, revoked, "civil-aviation", policy, T0)
    assert upsert is not None and delete is not None
    return upsert, delete


def test_an_acknowledged_change_is_never_overdue_and_its_time_is_measured(ledgerbook: Ledgerbook) -> None:
    upsert, _ = changes(ledgerbook)
    tracker = AckTracker(SLA)
    tracker.expect(upsert, T0)
    settled = tracker.acknowledge(applied(upsert, 0, T0 + 2 * S))
    assert [(s.agency, s.version, s.seconds, s.late) for s in settled] == [("civil-aviation", 1, 2.0, False)]
    assert tracker.overdue(T0 + 3600 * S) == []


def test_a_copy_behind_within_its_sla_is_not_reported_but_is_once_the_sla_passes(
    ledgerbook: Ledgerbook,
) -> None:
    upsert, _ = changes(ledgerbook)
    tracker = AckTracker(SLA)
    tracker.expect(upsert, T0)
    assert tracker.overdue(T0 + 59 * S) == []
    [overdue] = tracker.overdue(T0 + 70 * S)
    assert overdue.expectation.version == 1 and overdue.overdue_by == 10 * S
    assert tracker.overdue(T0 + 80 * S) == []  # reported once, not every tick
    [late] = tracker.acknowledge(applied(upsert, 0, T0 + 90 * S))
    assert late.late and late.seconds == 90.0


def test_a_revocation_has_the_shorter_sla(ledgerbook: Ledgerbook) -> None:
    upsert, delete = changes(ledgerbook)
    other, _ = changes(ledgerbook, "L-2")
    tracker = AckTracker(SLA)
    tracker.expect(upsert, T0)
    tracker.acknowledge(applied(upsert, 0, T0 + S))
    tracker.expect(delete, T0 + 2 * S)
    tracker.expect(other, T0 + 2 * S)
    overdue = tracker.overdue(T0 + 15 * S)  # revocation SLA 10 s passed, listing SLA 60 s not
    assert [(o.expectation.listing_id, o.expectation.op) for o in overdue] == [("L-1", "delete")]


def test_the_finding_says_what_the_copy_last_applied_and_how_late_it_is(ledgerbook: Ledgerbook) -> None:
    upsert, delete = changes(ledgerbook)
    tracker = AckTracker(SLA)
    tracker.expect(upsert, T0)
    tracker.acknowledge(applied(upsert, 0, T0 + S))
    tracker.expect(delete, T0 + 2 * S)
    [overdue] = tracker.overdue(T0 + 20 * S)
    finding = missing_ack(overdue, T0 + 20 * S)
    assert (finding.kind, finding.copy_agency, finding.expected_version, finding.copy_version) == (
        "missing_ack", "civil-aviation", 2, 1,
    )  # fmt: skip
    assert "overdue by 8.0 s" in finding.detail and "v1 (upsert)" in finding.detail
    assert finding.since == T0 + 2 * S


def test_acknowledging_a_later_version_settles_the_skipped_ones(ledgerbook: Ledgerbook) -> None:
    """A copy reading a compacted view topic may never see a superseded version: that is not a fault."""
    upsert, delete = changes(ledgerbook)
    tracker = AckTracker(SLA)
    tracker.expect(upsert, T0)
    tracker.expect(delete, T0 + S)
    settled = tracker.acknowledge(applied(delete, 1, T0 + 3 * S))
    assert sorted(s.version for s in settled) == [1, 2]
    assert tracker.pending() == 0 and tracker.overdue(T0 + 3600 * S) == []


def test_an_acknowledgement_read_before_its_change_settles_it(ledgerbook: Ledgerbook) -> None:
    """Topics are read in no particular order relative to each other (a restart re-reads both)."""
    upsert, _ = changes(ledgerbook)
    tracker = AckTracker(SLA)
    tracker.acknowledge(applied(upsert, 0, T0 + 4 * S))
    [settled] = tracker.expect(upsert, T0)
    assert settled.seconds == 4.0 and tracker.overdue(T0 + 3600 * S) == []


def test_the_changes_awaited_are_counted_as_they_come_not_read_each_time(ledgerbook: Ledgerbook) -> None:
    """The operator page asks every second; a copy down for hours leaves millions awaited."""
    tracker = AckTracker(SLA)
    upserts = {}
    for n in range(4):
        upserts[n], delete = changes(ledgerbook, f"L-{n}")
        tracker.expect(upserts[n], T0)
        tracker.expect(upserts[n], T0)  # read again: awaited once
        tracker.expect(delete, T0 + S)
    tracker.acknowledge(applied(delete, 0, T0 + 2 * S))  # settles both changes of L-3
    tracker.acknowledge(applied(upserts[0], 0, T0 + 2 * S))
    statements: list[str] = []
    tracker._db.set_trace_callback(statements.append)
    assert tracker.pending_by_agency() == {"civil-aviation": 5} and tracker.pending() == 5
    assert statements == []
    assert AckTracker(SLA, tracker._db).pending_by_agency() == {"civil-aviation": 5}  # counted once, opened
