"""Commands into (unsealed) events: check every rule, pseudonymise, mask, number the version.

Pure apart from the keyed hash: `decide` takes the listing as the log says it is
and the decision time, and either raises a `RuleViolation` or returns the one
event the command stands for. The raw national id and full name stop here.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from services.core.commands import (
    AnyCommand,
    CorrectCommand,
    ExemptCommand,
    IssueCommand,
    ObjectCommand,
    ResolveCommand,
    RevokeCommand,
)
from services.core.crypto import mask_id, mask_name, pseudonymise
from services.core.errors import RuleViolation
from services.core.events import (
    Envelope,
    Exemption,
    ExemptionGranted,
    ListingCorrected,
    ListingEvent,
    ListingIssued,
    ListingRevoked,
    ListingState,
    ObjectionFiled,
    ObjectionResolved,
)
from services.core.ids import name_id
from services.core.policy import Policy
from services.core.rules import (
    check_change,
    check_event,
    check_notice,
    check_subject,
    latest_expiry,
    objection_due,
)
from services.core.screening import check_free_text

# The event each command becomes: a retried request must be the same kind of command.
EVENT_TYPES: dict[type[AnyCommand], str] = {
    IssueCommand: "ListingIssued",
    CorrectCommand: "ListingCorrected",
    RevokeCommand: "ListingRevoked",
    ExemptCommand: "ExemptionGranted",
    ObjectCommand: "ObjectionFiled",
    ResolveCommand: "ObjectionResolved",
}


def decide(
    command: AnyCommand, state: ListingState | None, now: datetime, policy: Policy, pseudonym_key: bytes
) -> ListingEvent:
    """The event `command` stands for, if every rule allows it; else a `RuleViolation`."""
    check_agency(command.agency, policy)
    check_free_text(command, [state.display_name] if state else [], [state.display_id] if state else [])
    if isinstance(command, IssueCommand):
        event: ListingEvent = issue_event(command, state, now, policy, pseudonym_key)
    else:
        check_change(state, command.agency, command.expected_version, command.listing_id, policy)
        event = change_event(command, envelope(command, state, now), now, policy)
    check_event(state, event, policy)
    return event


def check_agency(agency: str, policy: Policy) -> None:
    known = policy.agency_by_id.get(agency)
    if known is None or not known.issues:
        raise RuleViolation(
            "unknown_agency", f"{agency!r} is not an issuing agency of the policy ({policy.issuers})"
        )


def envelope(command: AnyCommand, state: ListingState | None, now: datetime) -> Envelope:
    return Envelope(
        event_id=command.event_id,
        listing_id=command.listing_id,
        version=(state.envelope.version if state else 0) + 1,
        agency=command.agency,
        occurred_at=now,
        recorded_at=now,
        request_id=command.request_id,
    )


def issue_event(
    command: IssueCommand, state: ListingState | None, now: datetime, policy: Policy, key: bytes
) -> ListingIssued:
    if state is not None:
        raise RuleViolation("listing_exists", f"listing {command.listing_id} exists; use a new request_id")
    check_subject(command, policy)
    check_notice(command.notice_served_at, now)
    assert command.notice_served_at is not None  # check_notice refuses a missing notice
    national_id = command.national_id.get_secret_value()
    expires_at = command.expires_at or latest_expiry(
        command.category, command.measures, command.effective_from, policy
    )
    return ListingIssued(
        envelope=envelope(command, None, now),
        subject_ref=pseudonymise(national_id, key),
        subject_kind=command.subject_kind,
        display_name=mask_name(command.full_name.get_secret_value()),
        display_id=mask_id(national_id),
        category=command.category,
        measures=command.measures,
        legal_basis=command.legal_basis,
        severity=command.severity,
        case_ref=command.case_ref,
        details=command.details,
        notice_served_at=command.notice_served_at,
        effective_from=command.effective_from,
        expires_at=expires_at,
    )


def change_event(command: AnyCommand, env: Envelope, now: datetime, policy: Policy) -> ListingEvent:
    expected = env.version - 1
    if isinstance(command, CorrectCommand):
        changes = command.changes
        full_name = changes.full_name.get_secret_value() if changes.full_name else None
        return ListingCorrected(
            envelope=env,
            expected_version=expected,
            reason=command.reason,
            measures=changes.measures,
            legal_basis=changes.legal_basis,
            severity=changes.severity,
            display_name=mask_name(full_name) if full_name else None,
            details=changes.details,
            expires_at=changes.expires_at,
        )
    if isinstance(command, RevokeCommand):
        return ListingRevoked(
            envelope=env, expected_version=expected, reason=command.reason, note=command.note
        )
    if isinstance(command, ExemptCommand):
        return ExemptionGranted(envelope=env, expected_version=expected, exemption=exemption_of(command, env))
    if isinstance(command, ObjectCommand):
        return ObjectionFiled(
            envelope=env,
            expected_version=expected,
            objection_id=derived_id("objection", env.event_id),
            kind=command.kind,
            grounds=command.grounds,
            due_at=objection_due(now, policy),
        )
    if isinstance(command, ResolveCommand):
        return ObjectionResolved(
            envelope=env,
            expected_version=expected,
            objection_id=command.objection_id,
            outcome=command.outcome,
            required_action=command.required_action,
            note=command.note,
        )
    raise TypeError(f"not a change command: {type(command).__name__}")


def exemption_of(command: ExemptCommand, env: Envelope) -> Exemption:
    return Exemption(
        exemption_id=derived_id("exemption", env.event_id),
        measure=command.measure,
        starts_at=command.starts_at,
        ends_at=command.ends_at,
        reason=command.reason,
    )


def derived_id(kind: str, event_id: str) -> str:
    """Ids minted by a command derive from its event id, so a retry mints the same ones."""
    return name_id(uuid.UUID(event_id), kind)
