"""Every rule of DESIGN.md §6 refuses with its stable code, and lets the valid case through."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.core import rules
from services.core.commands import IssueCommand
from services.core.errors import ConflictError, RuleViolation, UnknownListing
from services.core.events import ObjectionFiled
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
    desk.submit(samples.exempt(listing))
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
