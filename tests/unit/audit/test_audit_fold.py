"""The audit's re-run of the ledger's fold: same decisions as the ledger, in any arrival order."""

from __future__ import annotations

from pathlib import Path

from services.audit.fold import Change, LedgerReplica, view_ops
from services.core.events import Event, ListingState
from services.core.listing import evolve, is_listing_event
from services.core.views import holds, project
from tests.support.factory import Ledgerbook, policy_with_keys
from tests.unit.audit.support import replayed


def step(state: ListingState | None, event: Event) -> ListingState:
    assert is_listing_event(event)
    return evolve(state, event)


def test_a_change_read_before_its_issue_is_held_then_applied_in_order(tmp_path: Path) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    book = Ledgerbook(keystore)
    issued = book.issue("L-1", agency="luoshan-police")
    objected = book.object("L-1", agency="luoshan-police")
    revoked = book.revoke("L-1", agency="court")
    changes: list[Change] = []
    replica = LedgerReplica(policy, on_change=changes.append)
    for event in (revoked, objected, issued):  # the court's topic happened to be read first
        replica.feed(replayed(event))
    assert [c.after.envelope.version for c in changes] == [1, 2, 3]
    assert replica.states["L-1"].status == "revoked"
    assert replica.held_events() == [] and replica.refused == []


def test_refused_and_duplicate_events_do_not_change_the_listing(tmp_path: Path) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    book = Ledgerbook(keystore)
    issued = book.issue("L-1", agency="tax-bureau")
    intruder = book.revoke("L-1", agency="luoshan-police")  # neither issuer nor court
    replica = LedgerReplica(policy)
    for event in (issued, issued, intruder):
        replica.feed(replayed(event))
    assert replica.states["L-1"].envelope.version == 1
    assert [d.code for _, d in replica.refused] == ["not_issuer"]


def test_content_the_rules_forbid_is_refused_as_the_ledger_refuses_it(tmp_path: Path) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    book = Ledgerbook(keystore)
    replica = LedgerReplica(policy)
    replica.feed(replayed(book.issue("L-1", severity="minor")))  # signed, in order, but unlawful
    assert replica.states == {}
    assert [d.code for _, d in replica.refused] == ["severity_too_low"]


def test_a_gap_that_never_fills_leaves_its_successor_held(tmp_path: Path) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    book = Ledgerbook(keystore)
    issued = book.issue("L-1")
    book.correct("L-1", severity="severe")  # lost
    revoked = book.revoke("L-1")
    replica = LedgerReplica(policy)
    replica.feed(replayed(issued))
    replica.feed(replayed(revoked, offset=7))
    assert replica.states["L-1"].status == "active"
    assert [str(item.position) for item in replica.held_events()] == ["listings.court[0]@7"]


def test_view_ops_follow_entitlement_when_a_correction_drops_a_measure(tmp_path: Path) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    book = Ledgerbook(keystore)
    before = step(None, book.issue("L-1", measures=("flight_ban", "rail_ban")))
    after = step(before, book.correct("L-1", measures=["flight_ban"]))
    assert view_ops(None, before, policy) == {"civil-aviation": "upsert", "railway": "upsert"}
    assert view_ops(before, after, policy) == {"civil-aviation": "upsert", "railway": "delete"}
    ended: ListingState = step(after, book.revoke("L-1"))
    assert view_ops(after, ended, policy) == {"civil-aviation": "delete"}


def test_holds_agrees_with_project_for_every_agency_and_status(tmp_path: Path) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    book = Ledgerbook(keystore)
    states: list[ListingState | None] = [None]
    states.append(step(None, book.issue("L-1", measures=("flight_ban", "high_consumption"))))
    states.append(step(states[-1], book.object("L-1")))
    states.append(step(states[-1], book.revoke("L-1")))
    for state in states:
        for agency in [a.id for a in policy.agencies]:
            assert holds(state, agency, policy) == (project(state, agency, policy) is not None)


def test_rival_versions_are_both_heard_and_the_first_read_applies_as_in_the_ledger(tmp_path: Path) -> None:
    """The audit once kept held events by version, so a later rival silently replaced the first."""
    policy, keystore = policy_with_keys(tmp_path)
    book = Ledgerbook(keystore)
    issued = book.issue("L-1")
    head = book.heads["L-1"]
    corrected = book.correct("L-1", severity="severe")
    book.heads["L-1"] = head
    revoked = book.revoke("L-1")  # a rival version 2, linked to the same head
    replica = LedgerReplica(policy)
    replica.feed(replayed(corrected, offset=1))
    replica.feed(replayed(revoked, offset=2))
    replica.feed(replayed(issued, offset=3))
    assert replica.states["L-1"].event_ids == [issued.envelope.event_id, corrected.envelope.event_id]
    assert [(item.position.offset, d.code) for item, d in replica.refused] == [(2, "version_conflict")]
    assert replica.held_events() == []
