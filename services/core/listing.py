"""A listing's life as a fold: `evolve(state, event)` and the ordering rules of `admit`.

Pure functions over the contract models: no Kafka, no clock, no I/O. The ledger
calls `admit` to decide what to do with an event (apply, ignore a duplicate, hold
it back until the gap before it fills, or refuse it), then `evolve` to apply it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeGuard

from services.core.events import (
    LISTING_EVENTS,
    Event,
    ExemptionGranted,
    ListingCorrected,
    ListingEvent,
    ListingExpired,
    ListingIssued,
    ListingRevoked,
    ListingState,
    Objection,
    ObjectionFiled,
    ObjectionResolved,
)
from services.core.policy import Policy
from services.core.topics import BACKBONE

ENDED = ("revoked", "expired")
Action = Literal["apply", "duplicate", "hold", "refuse"]


def evolve(state: ListingState | None, event: ListingEvent) -> ListingState:
    """The listing after `event`; `event` must already have been admitted (see `admit`)."""
    if isinstance(event, ListingIssued):
        return _issued(event)
    if state is None:
        raise ValueError(f"{type(event).__name__} before ListingIssued for {event.envelope.listing_id}")
    changes = _changes(state, event)
    changes["envelope"] = event.envelope
    changes["event_ids"] = [*state.event_ids, event.envelope.event_id]
    return state.model_copy(update=changes)


def _issued(event: ListingIssued) -> ListingState:
    payload = event.model_dump(exclude={"envelope"})
    return ListingState(
        envelope=event.envelope,
        issuer=event.envelope.agency,
        status="active",
        exemptions=[],
        objections=[],
        end_reason="",
        event_ids=[event.envelope.event_id],
        **payload,
    )


def _changes(state: ListingState, event: ListingEvent) -> dict[str, object]:
    if isinstance(event, ListingCorrected):
        fields = event.model_dump(exclude={"envelope", "expected_version", "reason"})
        return {name: value for name, value in fields.items() if value is not None}
    if isinstance(event, ListingRevoked):
        return {"status": "revoked", "end_reason": f"revoked ({event.reason.value}): {event.note}"}
    if isinstance(event, ListingExpired):
        return {"status": "expired", "end_reason": "expired: retention period over"}
    if isinstance(event, ExemptionGranted):
        return {"exemptions": [*state.exemptions, event.exemption]}
    if isinstance(event, ObjectionFiled):
        objection = Objection(objection_id=event.objection_id, kind=event.kind, due_at=event.due_at)
        status = "disputed" if state.status == "active" else state.status
        return {"objections": [*state.objections, objection], "status": status}
    if isinstance(event, ObjectionResolved):
        return _resolved(state, event)
    raise TypeError(f"not a listing event: {type(event).__name__}")


def _resolved(state: ListingState, event: ObjectionResolved) -> dict[str, object]:
    objections = [
        o.model_copy(update={"outcome": event.outcome}) if o.objection_id == event.objection_id else o
        for o in state.objections
    ]
    still_open = any(o.outcome is None for o in objections)
    status = "active" if state.status == "disputed" and not still_open else state.status
    return {"objections": objections, "status": status}


def open_objections(state: ListingState) -> list[Objection]:
    return [o for o in state.objections if o.outcome is None]


@dataclass(frozen=True)
class Decision:
    """What the ledger does with one event. `code`/`reason` explain a refusal or hold; `after`, once
    `admission.judge` has ruled "apply", is the listing the event makes (built once, for the rules
    and for the fold)."""

    action: Action
    code: str = ""
    reason: str = ""
    after: ListingState | None = field(default=None, compare=False, repr=False)


APPLY = Decision("apply")


def refuse(code: str, reason: str) -> Decision:
    return Decision("refuse", code, reason)


def admit(state: ListingState | None, event: ListingEvent, policy: Policy) -> Decision:
    """Decide, from order and authority alone, whether `event` may change `state`.

    Signatures and hashes are checked before this (`sealing`), legal rules after it
    (`rules`); this function owns versions, the chain link and who may act.
    """
    env = event.envelope
    if state is None:
        if isinstance(event, ListingIssued):
            if env.version != 1:
                return refuse("bad_version", "a listing starts at version 1")
            return _admit_issuer(event, policy)
        return Decision("hold", "unknown_listing", f"{env.listing_id} has not been issued (yet)")
    if env.event_id in state.event_ids:
        return Decision("duplicate", "duplicate", f"event {env.event_id} was already applied")
    if isinstance(event, ListingIssued):
        return refuse("listing_exists", f"{env.listing_id} was already issued by {state.issuer}")
    return _admit_change(state, event, policy)


def _admit_change(state: ListingState, event: ListingEvent, policy: Policy) -> Decision:
    env = event.envelope
    current = state.envelope.version
    if env.version <= current:
        return refuse("version_conflict", f"version {env.version} of {env.listing_id} is taken")
    if env.version > current + 1:
        return Decision("hold", "version_gap", f"version {env.version} waits for {current + 1}")
    if env.prev_hash != state.envelope.hash:
        return refuse("broken_chain", f"prev_hash does not link to version {current}")
    expected = getattr(event, "expected_version", current)
    if expected != current:
        return refuse("stale_version", f"expected version {expected}, listing is at {current}")
    if state.status in ENDED:
        return refuse("listing_ended", f"{env.listing_id} is {state.status}; it can no longer change")
    return _admit_actor(state, event, policy)


def _admit_issuer(event: ListingIssued, policy: Policy) -> Decision:
    """Only an agency the policy lets issue may start a listing (enforcers and the backbone may not)."""
    agency = policy.agency_by_id.get(event.envelope.agency)
    if agency is not None and agency.issues:
        return APPLY
    return refuse("not_an_issuer", f"{event.envelope.agency} may not issue listings")


def _admit_actor(state: ListingState, event: ListingEvent, policy: Policy) -> Decision:
    actor = event.envelope.agency
    if isinstance(event, ListingExpired):
        if actor == BACKBONE:
            return APPLY
        return refuse("not_backbone", "only the backbone expires listings")
    agency = policy.agency_by_id.get(actor)
    if actor == state.issuer or (agency is not None and agency.is_court):
        return APPLY
    return refuse(
        "not_issuer",
        f"{actor} did not issue {event.envelope.listing_id} ({state.issuer} did) and is not a court",
    )


def is_listing_event(event: Event) -> TypeGuard[ListingEvent]:
    """True for the events that change a listing (the ones on `listings.*` topics)."""
    return isinstance(event, LISTING_EVENTS)
