"""The words of a timeline: one short line per listing event, as an operator would tell it."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.core.events import (
    Event,
    ExemptionGranted,
    ListingCorrected,
    ListingExpired,
    ListingIssued,
    ListingRevoked,
    ObjectionFiled,
    ObjectionResolved,
)

LABELS = {
    ListingIssued: "ISSUED",
    ListingCorrected: "CORRECTED",
    ListingRevoked: "REVOKED",
    ListingExpired: "EXPIRED",
    ExemptionGranted: "EXEMPTED",
    ObjectionFiled: "OBJECTION",
    ObjectionResolved: "RESOLVED",
}
CORRECTABLE = ("measures", "legal_basis", "severity", "display_name", "details", "expires_at")


def day(value: datetime) -> str:
    return value.strftime("%Y-%m-%d")


def label(event: Event) -> str:
    return f"{LABELS.get(type(event), type(event).__name__)} v{event.envelope.version}"


def describe(event: Event) -> str:
    """What the decision said, in one line."""
    if isinstance(event, ListingIssued):
        return (
            f"{', '.join(event.measures)} · basis: {event.legal_basis} · severity {event.severity}"
            f" · case {event.case_ref} · {event.category} · in force {day(event.effective_from)}"
            f" to {day(event.expires_at)}"
        )
    if isinstance(event, ListingCorrected):
        return f"{event.reason}: {'; '.join(_changes(event)) or 'no field changed'}"
    if isinstance(event, ListingRevoked):
        return f"{event.reason.value}: {event.note}"
    if isinstance(event, ListingExpired):
        return f"retention period over at {day(event.expired_at)}"
    if isinstance(event, ExemptionGranted):
        ex = event.exemption
        return f"{ex.measure} suspended {day(ex.starts_at)} to {day(ex.ends_at)}: {ex.reason}"
    if isinstance(event, ObjectionFiled):
        return f"{event.kind} {event.objection_id}: {event.grounds}; answer due {day(event.due_at)}"
    if isinstance(event, ObjectionResolved):
        return f"{event.objection_id} {event.outcome}, action {event.required_action}: {event.note}"
    return type(event).__name__


def _changes(event: ListingCorrected) -> list[str]:
    values = {name: getattr(event, name) for name in CORRECTABLE}
    return [f"{name} -> {_value(value)}" for name, value in values.items() if value is not None]


def _value(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, datetime):
        return day(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value)


def lag(delta: timedelta) -> str:
    """A delay a person reads at a glance: '+0.4 s', '+3.0 min', '+4.4 y'."""
    seconds = delta.total_seconds()
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    for unit, size in (("y", 365.25 * 86400), ("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{sign}{seconds / size:.1f} {unit}"
    return f"{sign}{seconds:.1f} s"
