"""Every rule of docs/architecture.md §6 refuses with its stable code, and lets the valid case through."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from services.core import rules
from services.core.commands import AnyCommand, ExemptCommand, IssueCommand, ObjectCommand, ResolveCommand
from services.core.errors import ConflictError, RuleViolation, UnknownListing
from services.core.events import ListingIssued, ObjectionFiled
from services.core.policy import load_policy
from tests.unit.publisher import samples
from tests.unit.publisher.cases import CHANGE_REFUSALS, ISSUE_REFUSALS, Step
from tests.unit.publisher.desk import Desk
from tests.unit.publisher.samples import NOW

POLICY = load_policy()


@pytest.mark.parametrize(("code", "changes"), ISSUE_REFUSALS, ids=[c for c, _ in ISSUE_REFUSALS])
def test_an_issue_breaking_one_rule_is_refused_with_its_code(code: str, changes: dict[str, Any]) -> None:
    with pytest.raises(RuleViolation) as refused:
        Desk().submit(samples.issue(**changes))
    assert refused.value.code == code
    assert len(refused.value.message) > 20  # a sentence, not just a code


@pytest.mark.parametrize(("code", "steps"), CHANGE_REFUSALS, ids=[c for c, _ in CHANGE_REFUSALS])
def test_a_change_breaking_one_rule_is_refused_with_its_code(
    code: str, steps: Callable[[str], list[Step]]
) -> None:
    desk = Desk()
    listing = desk.submit(samples.issue()).envelope.listing_id
    *preparation, last = steps(listing)
    done: list[Any] = []
    for step in preparation:
        done.append(desk.submit(step(done)))
    with pytest.raises(RuleViolation) as refused:
        desk.submit(last(done))
    assert refused.value.code == code


def test_conflict_and_unknown_listing_are_their_own_families() -> None:
    desk = Desk()
    listing = desk.submit(samples.issue()).envelope.listing_id
    desk.submit(samples.correct(listing, 1))
    with pytest.raises(ConflictError):
        desk.submit(samples.correct(listing, 1))
    with pytest.raises(UnknownListing):
        desk.submit(samples.revoke("nothing-here", 1))


def test_the_valid_path_passes_every_rule() -> None:
    desk = Desk()
    listing = desk.submit(samples.issue()).envelope.listing_id
    filed = desk.submit(samples.object_(listing))
    assert isinstance(filed, ObjectionFiled)
    desk.submit(samples.resolve(listing, filed.objection_id, "upheld", "correct"))
    desk.submit(samples.exempt(listing, expected_version=3))
    desk.submit(samples.correct(listing, 4))
    assert desk.submit(samples.revoke(listing, 5)).envelope.version == 6


def test_a_court_may_correct_a_listing_another_agency_issued() -> None:
    desk = Desk()
    police = samples.issue(agency="luoshan-police", category="public_security_risk", details={})
    listing = desk.submit(police).envelope.listing_id
    assert desk.submit(samples.correct(listing, 1, agency="court")).envelope.agency == "court"
    with pytest.raises(RuleViolation, match="not_issuer"):
        desk.submit(samples.correct(listing, 2, agency="market-regulator"))


def test_a_subject_is_an_adult_from_the_day_of_the_birthday() -> None:
    eighteenth = date(NOW.year - 18, NOW.month, NOW.day)
    Desk().submit(samples.issue(birth_date=eighteenth))
    with pytest.raises(RuleViolation, match="minor_subject"):
        Desk().submit(samples.issue(birth_date=eighteenth + timedelta(days=1)))
    assert rules.age_on(date(2008, 2, 29), date(2026, 2, 28)) == 17
    assert rules.age_on(date(2008, 2, 29), date(2026, 3, 1)) == 18


def test_a_subject_who_was_a_minor_on_a_past_effective_date_is_refused() -> None:
    """Backdated: an adult today, but 17 on the day the listing took effect."""
    effective = NOW - timedelta(days=400)
    adult_now = date(NOW.year - 18, 1, 1)
    assert rules.age_on(adult_now, NOW.date()) >= 18 and rules.age_on(adult_now, effective.date()) < 18
    backdated = samples.issue(
        birth_date=adult_now, effective_from=effective, notice_served_at=effective - timedelta(days=8)
    )
    with pytest.raises(RuleViolation, match="minor_subject"):
        Desk().submit(backdated)


def test_a_subject_who_comes_of_age_before_a_future_effective_date_may_be_listed() -> None:
    """A minor today, of age on every day the listing will be in force."""
    seventeen = date(NOW.year - 17, NOW.month, NOW.day)
    later = NOW + timedelta(days=400)
    Desk().submit(samples.issue(birth_date=seventeen, effective_from=later))
    with pytest.raises(RuleViolation, match="minor_subject"):
        Desk().submit(samples.issue(birth_date=seventeen, effective_from=NOW + timedelta(days=300)))


def test_an_expiry_already_past_at_the_decision_is_refused() -> None:
    """After its effective date, but no later than the decision: it would expire on arrival."""
    long_ago = NOW - timedelta(days=30)
    for expires_at in (NOW - timedelta(days=1), NOW):
        command = samples.issue(effective_from=long_ago, notice_served_at=long_ago - timedelta(days=8),
                                expires_at=expires_at)  # fmt: skip
        with pytest.raises(RuleViolation, match="expires_before_decision"):
            Desk().submit(command)
    Desk().submit(samples.issue(effective_from=long_ago, notice_served_at=long_ago - timedelta(days=8),
                                expires_at=NOW + timedelta(seconds=1)))  # fmt: skip


def test_an_omitted_expiry_already_past_is_refused_too() -> None:
    """The policy's latest expiry of a listing backdated by more than its maximum is past as well."""
    ancient = NOW - timedelta(days=2000)
    command = samples.issue(effective_from=ancient, notice_served_at=ancient - timedelta(days=8))
    with pytest.raises(RuleViolation, match="expires_before_decision"):
        Desk().submit(command)


def test_a_correction_may_not_move_the_expiry_into_the_past() -> None:
    desk = Desk()
    month_ago = NOW - timedelta(days=30)
    issued = desk.submit(
        samples.issue(effective_from=month_ago, notice_served_at=month_ago - timedelta(days=8))
    )
    listing = issued.envelope.listing_id
    with pytest.raises(RuleViolation, match="expires_before_decision"):
        desk.submit(samples.correct(listing, 1, expires_at=NOW - timedelta(days=1)))


def test_the_ledger_refuses_a_past_expiry_on_recheck() -> None:
    """The rule is a content rule: the ledger re-checks it against the event's own decision time."""
    month_ago = NOW - timedelta(days=30)
    event = Desk().submit(
        samples.issue(effective_from=month_ago, notice_served_at=month_ago - timedelta(days=8))
    )
    assert isinstance(event, ListingIssued)
    stale = event.model_copy(update={"expires_at": event.envelope.occurred_at})
    with pytest.raises(RuleViolation, match="expires_before_decision"):
        rules.check_event(None, stale, POLICY)


@pytest.mark.parametrize("model", [ExemptCommand, ObjectCommand, ResolveCommand])
def test_every_redress_command_states_the_version_it_was_decided_against(model: type[BaseModel]) -> None:
    with pytest.raises(ValidationError, match="expected_version"):
        model.model_validate({"agency": "court", "listing_id": "L", "objection_id": "o",
                              "measure": "flight_ban", "starts_at": NOW, "ends_at": NOW, "reason": "r",
                              "grounds": "g", "outcome": "dismissed"})  # fmt: skip


@pytest.mark.parametrize("redress", ["exempt", "object", "resolve"])
def test_a_redress_against_an_old_version_is_a_conflict(redress: str) -> None:
    desk = Desk()
    listing = desk.submit(samples.issue()).envelope.listing_id
    filed = desk.submit(samples.object_(listing))
    assert isinstance(filed, ObjectionFiled)
    desk.submit(samples.correct(listing, 2))  # now at version 3: every redress below names 2
    stale: dict[str, AnyCommand] = {
        "exempt": samples.exempt(listing, expected_version=2),
        "object": samples.object_(listing, expected_version=2),
        "resolve": samples.resolve(listing, filed.objection_id, "dismissed", "none", expected_version=2),
    }
    with pytest.raises(ConflictError, match="stale_version"):
        desk.submit(stale[redress])


def test_the_listing_may_last_exactly_as_long_as_its_shortest_limit() -> None:
    longest = rules.latest_expiry("judgment_default", ["flight_ban", "exit_restriction"], NOW, POLICY)
    assert longest == NOW + timedelta(days=1095)  # exit_restriction's maximum, under the 1825-day retention
    Desk().submit(samples.issue(measures=["exit_restriction"], severity="severe", expires_at=longest))
    with pytest.raises(RuleViolation, match="duration_over_maximum"):
        Desk().submit(
            samples.issue(measures=["exit_restriction"], severity="severe", expires_at=longest + timedelta(1))
        )


def test_the_ledger_can_recheck_a_listing_state_with_the_content_rules() -> None:
    desk = Desk()
    listing = desk.submit(samples.issue()).envelope.listing_id
    state = desk.states[listing]
    rules.check_listing_content(state, POLICY)
    with pytest.raises(RuleViolation, match="unknown_measure"):
        rules.check_listing_content(state.model_copy(update={"measures": ["moon_ban"]}), POLICY)


def test_an_objection_due_date_beyond_the_policy_limit_is_refused_on_recheck() -> None:
    desk = Desk()
    listing = desk.submit(samples.issue()).envelope.listing_id
    filed = desk.submit(samples.object_(listing))
    late = filed.model_copy(update={"due_at": NOW + timedelta(days=POLICY.redress.objection_due_days + 1)})
    with pytest.raises(RuleViolation, match="objection_due_date"):
        rules.check_event(desk.states[listing], late, POLICY)


def test_a_person_needs_a_birth_date_but_an_organisation_does_not() -> None:
    with pytest.raises(ValidationError, match="birth_date"):
        samples.issue(birth_date=None)
    organisation = samples.issue(
        subject_kind="organisation", birth_date=None, full_name="Zhengzhou Trading Co"
    )
    assert isinstance(organisation, IssueCommand)
    Desk().submit(organisation)
