"""Objections past their due date without an outcome (docs/architecture.md §6: answered in a time limit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.core.events import Finding, ListingState, Objection
from services.core.views import LIVE
from services.reconciler import findings


@dataclass(frozen=True)
class Open:
    listing_id: str
    version: int
    issuer: str
    objection: Objection


def awaits_outcome(state: ListingState) -> bool:
    """Whether the listing holds an objection whose deadline is watched: live, and not answered."""
    return state.status in LIVE and any(o.outcome is None for o in state.objections)


class ObjectionWatch:
    """Open objections of live listings by due date; each overdue one is reported once."""

    def __init__(self) -> None:
        self._open: dict[str, list[Open]] = {}
        self._reported: set[tuple[str, str]] = set()

    def update(self, state: ListingState) -> None:
        listing_id = state.envelope.listing_id
        self._open.pop(listing_id, None)
        if state.status not in LIVE:
            return  # a revoked or expired listing no longer restricts anyone: its objection is moot
        still = [o for o in state.objections if o.outcome is None]
        if still:
            self._open[listing_id] = [
                Open(listing_id, state.envelope.version, state.issuer, o) for o in still
            ]

    def overdue(self, now: datetime) -> list[Finding]:
        found = []
        for listing in self._open.values():
            for item in listing:
                key = (item.listing_id, item.objection.objection_id)
                if now > item.objection.due_at and key not in self._reported:
                    self._reported.add(key)
                    found.append(
                        findings.overdue_objection(
                            item.listing_id, item.version, item.issuer, item.objection, now
                        )
                    )
        return found
