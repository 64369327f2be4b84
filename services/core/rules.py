"""The rules of docs/architecture.md §6 as pure functions: each refusal a `RuleViolation` a clerk can act on.

Two families. Checks on a listing's *content* (`check_listing_content`,
`check_event`) see only what events carry, so the ledger re-checks every event
with them. Checks on *subject facts* (`check_subject`) see raw inputs that never
leave the publisher: age, studies, force majeure.

Codes are stable (clients branch on them); sentences may improve. Standard
library, pydantic and core models only: no Kafka, no clock (callers pass `now`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Protocol

from services.core.commands import IssueCommand
from services.core.errors import ConflictError, RuleViolation, UnknownListing
from services.core.events import (
    Event,
    Exemption,
    ExemptionGranted,
    ListingCorrected,
    ListingIssued,
    ListingState,
    ObjectionFiled,
    ObjectionResolved,
)
from services.core.listing import ENDED, evolve
from services.core.policy import SEVERITY_TIERS, Policy


class ListingContent(Protocol):
    """What `ListingIssued` and `ListingState` both carry: the content the rules judge."""

    @property
    def category(self) -> str: ...
    @property
    def measures(self) -> list[str]: ...
    @property
    def legal_basis(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def details(self) -> dict[str, str]: ...
    @property
    def notice_served_at(self) -> datetime: ...
    @property
    def effective_from(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime: ...


# --- content: what a listing may say --------------------------------------------------


def check_listing_content(listing: ListingContent, policy: Policy) -> None:
    """A listing's content against the catalogue, the measures list and the grace period."""
    check_catalogue(listing.category, listing.details, policy)
    check_measures(listing.measures, listing.severity, policy)
    check_legal_basis(listing.legal_basis)
    check_duration(listing.category, listing.measures, listing.effective_from, listing.expires_at, policy)
    check_grace(listing.notice_served_at, listing.effective_from, policy)


def check_catalogue(category: str, details: dict[str, str], policy: Policy) -> None:
    known = policy.category_by_code.get(category)
    if known is None:
        raise RuleViolation(
            "field_outside_catalogue",
            f"category {category!r} is not in the public credit-information catalogue; "
            f"use one of {sorted(policy.category_by_code)}",
        )
    outside = sorted(set(details) - set(known.fields))
    if outside:
        raise RuleViolation(
            "field_outside_catalogue",
            f"the catalogue does not allow collecting {outside} for category {category}; "
            f"remove them (allowed: {known.fields})",
        )


def check_measures(measures: list[str], severity: str, policy: Policy) -> None:
    require_known_measures(measures, policy)
    if severity not in SEVERITY_TIERS:
        raise RuleViolation("unknown_severity", f"severity must be one of {list(SEVERITY_TIERS)}")
    for code in measures:
        needed = policy.measure_by_code[code].min_severity
        if SEVERITY_TIERS.index(severity) < SEVERITY_TIERS.index(needed):
            raise RuleViolation(
                "severity_too_low",
                f"measure {code} needs at least a {needed} offence and this one is {severity}: "
                "drop the measure or establish the higher tier",
            )


def require_known_measures(measures: list[str], policy: Policy) -> None:
    if not measures:
        raise RuleViolation("no_measure", "a listing must cite at least one measure from the measures list")
    unknown = [m for m in measures if m not in policy.measure_by_code]
    if unknown:
        raise RuleViolation(
            "unknown_measure",
            f"{unknown} are not on the measures list; cite only listed measures "
            f"({sorted(policy.measure_by_code)})",
        )


def check_legal_basis(legal_basis: str) -> None:
    if not legal_basis.strip():
        raise RuleViolation(
            "no_legal_basis", "cite the law, rule or decision the listing rests on (legal_basis is empty)"
        )


def latest_expiry(category: str, measures: list[str], effective_from: datetime, policy: Policy) -> datetime:
    """The latest a listing may expire: the shortest of its measures' maxima and its retention."""
    check_catalogue(category, {}, policy)
    require_known_measures(measures, policy)
    days = min(
        policy.category_by_code[category].retention_days,
        *(policy.measure_by_code[m].max_duration_days for m in measures),
    )
    return effective_from + timedelta(days=days)


def check_duration(
    category: str, measures: list[str], effective_from: datetime, expires_at: datetime, policy: Policy
) -> None:
    if expires_at <= effective_from:
        raise RuleViolation("expires_before_effect", "expires_at must come after effective_from")
    latest = latest_expiry(category, measures, effective_from, policy)
    if expires_at > latest:
        raise RuleViolation(
            "duration_over_maximum",
            f"the listing may last until {latest.isoformat()} at most (the shortest maximum duration "
            "of its measures and its category's retention); shorten expires_at",
        )


def check_expiry_ahead(expires_at: datetime, decided_at: datetime) -> None:
    """An expiry already past at the decision would reach every copy only to expire at once."""
    if expires_at <= decided_at:
        raise RuleViolation(
            "expires_before_decision",
            f"expires_at {expires_at.isoformat()} is not after the decision time {decided_at.isoformat()}: "
            "the listing would be over before it is published; give a later expires_at",
        )


def check_notice(notice_served_at: datetime | None, now: datetime) -> None:
    if notice_served_at is None or notice_served_at > now:
        raise RuleViolation(
            "notice_not_served",
            "serve the subject a notice of the reasons, the basis and their rights first, "
            "then give notice_served_at",
        )


def check_grace(notice_served_at: datetime, effective_from: datetime, policy: Policy) -> None:
    earliest = notice_served_at + timedelta(days=policy.redress.grace_days)
    if effective_from < earliest:
        raise RuleViolation(
            "grace_period_not_over",
            f"the listing may take effect {policy.redress.grace_days} days after the notice, "
            f"on {earliest.isoformat()} at the earliest; move effective_from",
        )


# --- subject facts: seen only by the publisher -----------------------------------------


def check_subject(command: IssueCommand, policy: Policy) -> None:
    """Who may not be listed at all: minors, students for campus loans, force majeure cases."""
    if command.birth_date is not None:
        check_adult(command.birth_date, command.effective_from.date(), policy.redress.min_subject_age_years)
    if command.is_full_time_student and (
        command.debt_kind == "campus_loan" or command.category == "campus_loan_default"
    ):
        raise RuleViolation(
            "student_campus_loan",
            "full-time students are not listed for campus-loan debts; pursue the debt without listing",
        )
    if command.force_majeure:
        raise RuleViolation(
            "force_majeure",
            "the default was caused by force majeure, which is grounds for refusal; do not list",
        )


def age_on(birth_date: date, day: date) -> int:
    before_birthday = (day.month, day.day) < (birth_date.month, birth_date.day)
    return day.year - birth_date.year - int(before_birthday)


def check_adult(birth_date: date, first_day: date, min_age: int) -> None:
    """The subject must be of age on every day the listing is in force, so on its first day.

    Age only grows, so the effective date decides, whether it is past or future: a listing
    backdated to when the subject was 17 is refused, whatever their age on the decision date."""
    if age_on(birth_date, first_day) < min_age:
        raise RuleViolation(
            "minor_subject",
            f"the subject is under {min_age} on {first_day.isoformat()}, when the listing takes effect: "
            "minors are never listed",
        )


# --- changes to an existing listing ---------------------------------------------------


def check_change(
    state: ListingState | None, agency: str, expected_version: int, listing_id: str, policy: Policy
) -> ListingState:
    """Who may change a listing, and only against the version they have seen."""
    if state is None:
        raise UnknownListing("unknown_listing", f"no listing {listing_id} has been published; check the id")
    actor = policy.agency_by_id.get(agency)
    if agency != state.issuer and not (actor is not None and actor.is_court):
        raise RuleViolation(
            "not_issuer",
            f"{agency} did not issue listing {listing_id} ({state.issuer} did) and is not a court; "
            f"ask {state.issuer} or a court to act",
        )
    if state.status in ENDED:
        raise RuleViolation(
            "listing_ended", f"listing {listing_id} is {state.status}; it can no longer change"
        )
    current = state.envelope.version
    if expected_version != current:
        raise ConflictError(
            "stale_version",
            f"you acted on version {expected_version} but listing {listing_id} is at version {current}; "
            "reload it and decide again",
        )
    return state


def check_event(
    state: ListingState | None, event: Event, policy: Policy, after: ListingState | None = None
) -> None:
    """The content rules for one listing event, given the listing before it (for the ledger too).

    `after`, the listing the event makes, when the caller has built it already (`admission.judge`
    keeps it for the fold, so a correction is not evolved twice). Order, version and authority are
    `listing.admit`'s; seals are `sealing`'s.
    """
    if isinstance(event, ListingIssued):
        check_notice(event.notice_served_at, event.envelope.occurred_at)
        check_listing_content(event, policy)
        check_expiry_ahead(event.expires_at, event.envelope.occurred_at)
    elif state is None:
        return
    elif isinstance(event, ListingCorrected):
        check_correction(state, event, policy, after)
        if event.expires_at is not None:
            check_expiry_ahead(event.expires_at, event.envelope.occurred_at)
    elif isinstance(event, ExemptionGranted):
        check_exemption(state, event.exemption)
    elif isinstance(event, ObjectionFiled):
        check_objection_due(event.envelope.occurred_at, event.due_at, policy)
    elif isinstance(event, ObjectionResolved):
        check_resolution(state, event.objection_id, event.outcome, event.required_action)


def check_correction(
    state: ListingState, event: ListingCorrected, policy: Policy, after: ListingState | None = None
) -> None:
    """A correction changes something, and the listing it makes (`after`, if already built) is lawful."""
    changes = event.model_dump(exclude={"envelope", "expected_version", "reason"}, exclude_none=True)
    if not changes:
        raise RuleViolation("empty_correction", "a correction must change at least one field")
    check_listing_content(evolve(state, event) if after is None else after, policy)


def check_exemption(state: ListingState, exemption: Exemption) -> None:
    if exemption.measure not in state.measures:
        raise RuleViolation(
            "measure_not_cited",
            f"the listing does not cite {exemption.measure} (it cites {state.measures}); "
            "an exemption suspends one of its own measures",
        )
    if not state.effective_from <= exemption.starts_at < exemption.ends_at <= state.expires_at:
        raise RuleViolation(
            "exemption_window",
            "the exemption window must start before it ends and lie within the listing's life "
            f"({state.effective_from.isoformat()} to {state.expires_at.isoformat()})",
        )


def objection_due(filed_at: datetime, policy: Policy) -> datetime:
    """The time limit for answering an objection filed at `filed_at` (paper §4.2)."""
    return filed_at + timedelta(days=policy.redress.objection_due_days)


def check_objection_due(filed_at: datetime, due_at: datetime, policy: Policy) -> None:
    if not filed_at < due_at <= objection_due(filed_at, policy):
        raise RuleViolation(
            "objection_due_date",
            f"an objection must be answered within {policy.redress.objection_due_days} days of filing",
        )


def check_resolution(state: ListingState, objection_id: str, outcome: str, required_action: str) -> None:
    objection = next((o for o in state.objections if o.objection_id == objection_id), None)
    if objection is None:
        raise RuleViolation("unknown_objection", f"the listing has no objection {objection_id}")
    if objection.outcome is not None:
        raise RuleViolation(
            "objection_closed", f"objection {objection_id} was already resolved ({objection.outcome})"
        )
    if outcome == "upheld" and required_action == "none":
        raise RuleViolation(
            "upheld_needs_action",
            "an upheld objection must name the action it calls for: required_action correct or revoke",
        )
    if outcome == "dismissed" and required_action != "none":
        raise RuleViolation(
            "dismissed_takes_no_action", "a dismissed objection calls for no action: required_action none"
        )
