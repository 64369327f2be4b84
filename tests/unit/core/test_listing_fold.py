"""A listing's life as a fold, and the ordering and authority rules of `admit`.

Histories are random but valid (built and sealed like the publisher builds them):
folding them in parts, even through the ledger topic's encoding, gives the state
folding them at once gives; every event is admitted in order, re-delivery is a
duplicate, a gap is held. Each refusal is then proved on a hand-built case.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.crypto import Keystore
from services.core.events import (
    LISTING_EVENTS,
    Event,
    ListingCorrected,
    ListingEvent,
    ListingExpired,
    ListingIssued,
    ListingState,
    ObjectionFiled,
    ObjectionResolved,
)
from services.core.listing import Decision, admit, evolve, open_objections
from services.core.policy import Policy
from services.core.sealing import seal
from services.core.serde import decode, encode
from services.core.topics import BACKBONE
from tests.support.factory import Ledgerbook, policy_with_keys

FAST = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ISSUERS = ["court", "luoshan-police", "tax-bureau", "market-regulator", "labour-bureau"]
MEASURES = ["flight_ban", "rail_ban", "high_consumption", "exit_restriction", "procurement_ban"]


@dataclass(frozen=True)
class Keys:
    policy: Policy
    keystore: Keystore


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(*policy_with_keys(tmp_path_factory.mktemp("keys")))


def step(state: ListingState | None, event: Event) -> ListingState:
    """`evolve` over the factory's events, which it types as plain `Event`s."""
    return evolve(state, cast(ListingEvent, event))


def judge(state: ListingState | None, event: Event, policy: Policy) -> Decision:
    return admit(state, cast(ListingEvent, event), policy)


def fold(events: list[Event], state: ListingState | None = None) -> ListingState | None:
    return functools.reduce(step, events, state)


def expire(book: Ledgerbook, listing_id: str) -> Event:
    return book.sealed(ListingExpired(envelope=book.envelope(listing_id, BACKBONE), expired_at=book.now))


# --- random valid histories ---------------------------------------------------------------------

STEP = st.one_of(
    st.tuples(st.just("correct"), st.lists(st.sampled_from(MEASURES), min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("rename"), st.text(min_size=1, max_size=8)),
    st.tuples(st.just("exempt"), st.sampled_from(MEASURES)),
    st.tuples(st.just("object"), st.none()),
    st.tuples(st.just("resolve"), st.sampled_from(["upheld", "dismissed"])),
)
ENDING = st.sampled_from([None, "revoke", "expire"])


@dataclass
class Plan:
    issuer: str
    measures: list[str]
    steps: list[tuple[str, Any]]
    acting: list[bool]  # per step: True when the court acts instead of the issuer
    ending: str | None
    filed: list[str] = field(default_factory=list)


PLANS = st.builds(
    Plan,
    issuer=st.sampled_from(ISSUERS),
    measures=st.lists(st.sampled_from(MEASURES), min_size=1, max_size=3, unique=True),
    steps=st.lists(STEP, max_size=7),
    acting=st.lists(st.booleans(), min_size=8, max_size=8),
    ending=ENDING,
)


def build(book: Ledgerbook, plan: Plan, listing_id: str = "L-1") -> list[Event]:
    """The sealed events of `plan`, in order; a resolve with nothing open files an objection."""
    events: list[Event] = [book.issue(listing_id, agency=plan.issuer, measures=tuple(plan.measures))]
    for (kind, arg), by_court in zip(plan.steps, plan.acting, strict=False):
        book.now += timedelta(days=1)
        events.append(_planned(book, plan, listing_id, kind, arg, "court" if by_court else plan.issuer))
    if plan.ending == "revoke":
        events.append(book.revoke(listing_id, agency=plan.issuer))
    if plan.ending == "expire":
        events.append(expire(book, listing_id))
    return events


def _planned(book: Ledgerbook, plan: Plan, listing_id: str, kind: str, arg: Any, actor: str) -> Event:
    if kind == "correct":
        return book.correct(listing_id, agency=actor, measures=arg)
    if kind == "rename":
        return book.correct(listing_id, agency=actor, display_name=arg)
    if kind == "exempt":
        return book.exempt(listing_id, arg, agency=actor)
    if kind == "resolve" and plan.filed:
        return book.resolve(listing_id, plan.filed.pop(0), agency=actor, outcome=arg)
    objection_id = f"obj-{len(book.heads)}-{book.version(listing_id)}"
    plan.filed.append(objection_id)
    return book.object(listing_id, objection_id, agency=actor)


@FAST
@given(plan=PLANS)
def test_folding_in_parts_equals_folding_at_once(keys: Keys, plan: Plan) -> None:
    events = build(Ledgerbook(keys.keystore), plan)
    whole = fold(events)
    for cut in range(len(events) + 1):
        assert fold(events[cut:], fold(events[:cut])) == whole


@FAST
@given(plan=PLANS)
def test_a_snapshot_on_the_ledger_topic_is_a_complete_state(keys: Keys, plan: Plan) -> None:
    """The ledger restarts from its compacted topic: encode/decode mid-history loses nothing."""
    events = build(Ledgerbook(keys.keystore), plan)
    for cut in range(1, len(events) + 1):
        prefix = fold(events[:cut])
        assert prefix is not None
        snapshot = decode(encode(prefix))
        assert isinstance(snapshot, ListingState)
        assert fold(events[cut:], snapshot) == fold(events)


@FAST
@given(plan=PLANS)
def test_a_valid_history_is_admitted_event_by_event(keys: Keys, plan: Plan) -> None:
    events = build(Ledgerbook(keys.keystore), plan)
    state: ListingState | None = None
    for event in events:
        decision = judge(state, event, keys.policy)
        assert decision.action == "apply", decision
        state = step(state, event)
    assert state is not None
    assert state.envelope.version == len(events)
    assert state.event_ids == [e.envelope.event_id for e in events]
    assert state.issuer == plan.issuer


@FAST
@given(plan=PLANS)
def test_status_follows_objections_and_endings(keys: Keys, plan: Plan) -> None:
    events = build(Ledgerbook(keys.keystore), plan)
    state = fold(events)
    assert state is not None
    filed = {e.objection_id for e in events if isinstance(e, ObjectionFiled)}
    resolved = {e.objection_id for e in events if isinstance(e, ObjectionResolved)}
    assert {o.objection_id for o in open_objections(state)} == filed - resolved
    expected = {"revoke": "revoked", "expire": "expired"}.get(plan.ending or "")
    assert state.status == (expected or ("disputed" if filed - resolved else "active"))
    assert (state.end_reason != "") == (plan.ending is not None)


@FAST
@given(plan=PLANS)
def test_redelivery_is_a_duplicate_and_a_gap_is_held(keys: Keys, plan: Plan) -> None:
    events = build(Ledgerbook(keys.keystore), plan)
    states = list(_states(events))
    final = states[-1]
    for event in events:
        assert judge(final, event, keys.policy).action == "duplicate"
    for i in range(1, len(events) - 1):
        decision = judge(states[i - 1], events[i + 1], keys.policy)
        assert (decision.action, decision.code) == ("hold", "version_gap")
    for event in events[1:]:
        decision = judge(None, event, keys.policy)
        assert (decision.action, decision.code) == ("hold", "unknown_listing")


def _states(events: list[Event]) -> Iterator[ListingState]:
    state: ListingState | None = None
    for event in events:
        state = step(state, event)
        yield state


# --- refusals, one by one -----------------------------------------------------------------------


@pytest.fixture
def book(keys: Keys) -> Ledgerbook:
    return Ledgerbook(keys.keystore)


def issued(book: Ledgerbook, agency: str = "luoshan-police") -> ListingState:
    return step(None, book.issue("L-1", agency=agency))


def decide(keys: Keys, state: ListingState | None, event: Event) -> tuple[str, str]:
    decision = judge(state, event, keys.policy)
    return decision.action, decision.code


def test_a_link_to_the_wrong_previous_hash_is_refused(keys: Keys, book: Ledgerbook) -> None:
    state = issued(book)
    unsealed = ListingCorrected(
        envelope=book.envelope("L-1", "luoshan-police"), expected_version=1, reason="r", display_name="X"
    )
    forged = seal(unsealed, "0" * 64, keys.keystore.private("luoshan-police"))
    assert decide(keys, state, forged) == ("refuse", "broken_chain")


def test_a_change_against_a_stale_version_is_refused(keys: Keys, book: Ledgerbook) -> None:
    state = step(issued(book), book.correct("L-1", agency="luoshan-police", display_name="A"))
    stale = book.sealed(
        ListingCorrected(
            envelope=book.envelope("L-1", "luoshan-police"), expected_version=1, reason="r", display_name="B"
        )
    )
    assert decide(keys, state, stale) == ("refuse", "stale_version")


def test_a_version_already_taken_is_a_conflict(keys: Keys, book: Ledgerbook) -> None:
    state = step(issued(book), book.correct("L-1", agency="luoshan-police", display_name="A"))
    rival = book.correct("L-1", agency="luoshan-police", display_name="B")
    rival = rival.model_copy(update={"envelope": rival.envelope.model_copy(update={"version": 2})})
    assert decide(keys, state, rival) == ("refuse", "version_conflict")


@pytest.mark.parametrize("agency", ["tax-bureau", "civil-aviation", "backbone", "nobody"])
def test_only_the_issuer_or_a_court_may_change_a_listing(keys: Keys, book: Ledgerbook, agency: str) -> None:
    state = issued(book)
    envelope = book.envelope("L-1", agency)
    change = ListingCorrected(envelope=envelope, expected_version=1, reason="r", display_name="X")
    assert decide(keys, state, change.model_copy(update={"envelope": _linked(envelope, state)})) == (
        "refuse",
        "not_issuer",
    )


def _linked(envelope: Any, state: ListingState) -> Any:
    return envelope.model_copy(update={"prev_hash": state.envelope.hash})


def test_a_court_may_revoke_another_agencys_listing(keys: Keys, book: Ledgerbook) -> None:
    state = issued(book, agency="luoshan-police")
    assert decide(keys, state, book.revoke("L-1", agency="court", reason="court_order")) == ("apply", "")


@pytest.mark.parametrize("agency", ["luoshan-police", "court"])
def test_only_the_backbone_expires_a_listing(keys: Keys, book: Ledgerbook, agency: str) -> None:
    state = issued(book)
    early = book.sealed(ListingExpired(envelope=book.envelope("L-1", agency), expired_at=book.now))
    assert decide(keys, state, early) == ("refuse", "not_backbone")
    book.heads["L-1"] = (1, state.envelope.hash)
    assert decide(keys, state, expire(book, "L-1")) == ("apply", "")


@pytest.mark.parametrize("ending", ["revoke", "expire"])
def test_an_ended_listing_can_no_longer_change(keys: Keys, book: Ledgerbook, ending: str) -> None:
    state = issued(book)
    end = book.revoke("L-1", agency="luoshan-police") if ending == "revoke" else expire(book, "L-1")
    state = step(state, end)
    attempts: list[Callable[[], Event]] = [
        lambda: book.correct("L-1", agency="luoshan-police", display_name="X"),
        lambda: book.revoke("L-1", agency="court", reason="court_order"),
        lambda: expire(book, "L-1"),
    ]
    for attempt in attempts:
        book.heads["L-1"] = (2, state.envelope.hash)
        assert decide(keys, state, attempt()) == ("refuse", "listing_ended")


def test_a_listing_starts_once_at_version_one_by_an_issuing_agency(keys: Keys, book: Ledgerbook) -> None:
    first = book.issue("L-1", agency="court")
    assert decide(keys, None, first) == ("apply", "")
    state = step(None, first)
    again = book.issue("L-1", agency="court")
    assert decide(keys, state, again) == ("refuse", "listing_exists")
    late = book.issue("L-2", agency="court")
    late = late.model_copy(update={"envelope": late.envelope.model_copy(update={"version": 2})})
    assert decide(keys, None, late) == ("refuse", "bad_version")
    for agency in ["civil-aviation", BACKBONE]:
        assert decide(keys, None, book.issue(f"L-{agency}", agency=agency)) == ("refuse", "not_an_issuer")


def test_evolve_refuses_a_change_before_the_issue(book: Ledgerbook) -> None:
    book.issue("L-1")
    with pytest.raises(ValueError, match="before ListingIssued"):
        step(None, book.correct("L-1", display_name="X"))


def test_a_correction_changes_only_the_fields_it_names(book: Ledgerbook) -> None:
    state = issued(book)
    after = step(state, book.correct("L-1", agency="luoshan-police", measures=["rail_ban"]))
    assert after.measures == ["rail_ban"]
    unchanged = set(ListingIssued.model_fields) - {"envelope", "measures"}
    assert all(getattr(after, name) == getattr(state, name) for name in unchanged)


def test_listing_events_alias_covers_the_fold() -> None:
    """`evolve` accepts exactly the listing events (the union the ledger dispatches on)."""
    assert set(get_args(ListingEvent)) == set(LISTING_EVENTS)
