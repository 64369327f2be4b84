"""Repair: re-deliver the right state of a differing listing into the agency's view topic.

A repair is an ordinary `ViewChanged` (an upsert of the expected row, or a delete of
a row that must not be there) from agency `reconciler`, so a copy applies it the way
it applies everything. It is keyed apart from the ledger's changes (`repair_key`) but
sent to the listing's own partition: compaction of the view topic then keeps the
ledger's latest change of every listing whatever repair came after it, and a fresh
copy reading the topic sees both in their order and refuses a repair older than it.
It is settled when the copy acknowledges any offset at or after the repair's own in
that listing's partition, and escalated once when that does not happen within the
repair SLA.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.core.events import CopyApplied, Envelope, Finding, ListingState, ViewChanged
from services.core.topics import RECONCILER
from services.core.views import ViewRow, delete_change, upsert_change
from services.reconciler.model import Difference

REPAIR_NAMESPACE = uuid.UUID("c4e0b7a1-3f6d-4e92-b8a5-1d7c2e9f6a30")


def repair_change(
    diff: Difference, detection: Finding, row: ViewRow | None, state: ListingState | None, now: datetime
) -> ViewChanged:
    """The view change that makes the copy hold `row` (or nothing, when `row` is None).

    Its version is the ledger version it was planned at (the row's, or the listing's for a
    delete; 0 for a listing the ledger never had), never the copy's: a copy refuses a change
    older than one it knows, so a repair the ledger has since overtaken cannot undo it.
    """
    version = row.version if row else diff.expected_version
    env = Envelope(
        event_id=str(uuid.uuid5(REPAIR_NAMESPACE, detection.finding_id)),
        listing_id=diff.listing_id,
        version=version,
        agency=RECONCILER,
        occurred_at=now,
        recorded_at=now,
    )
    if row is not None:
        return upsert_change(row, env, diff.agency, reason=f"repair: {diff.describe()}")
    return delete_change(state, env, diff.agency, reason=f"repair: {diff.describe()}")


@dataclass
class Repair:
    """One repair in flight: what was found, what was sent, and where it landed in the view topic."""

    detection: Finding
    change: ViewChanged
    deadline: datetime
    position: tuple[int, int] | None = None
    escalated: bool = False
    early: CopyApplied | None = None  # the copy's latest ack of the listing, read before the repair itself


class RepairBook:
    """Repairs sent and not yet acknowledged, one per agency and listing at most."""

    def __init__(self, sla: timedelta) -> None:
        self.sla = sla
        self._open: dict[tuple[str, str], Repair] = {}
        self._by_event: dict[str, Repair] = {}

    def open(self, detection: Finding, change: ViewChanged, now: datetime) -> Repair:
        repair = Repair(detection, change, now + self.sla)
        self._open[(change.view_agency, change.envelope.listing_id)] = repair
        self._by_event[change.envelope.event_id] = repair
        return repair

    def pending(self, agency: str, listing_id: str) -> bool:
        return (agency, listing_id) in self._open

    def delivered(
        self, change: ViewChanged, partition: int, offset: int
    ) -> tuple[Repair, CopyApplied] | None:
        """The repair was read back from the view topic: now its acknowledgement can be recognised,
        also one read before it (the reconciler reads the acks and the view topic side by side, so
        a copy's ack of a repair may come first); returned with that ack when it settles it."""
        repair = self._by_event.get(change.envelope.event_id)
        if repair is None:
            return None
        repair.position = (partition, offset)
        early, repair.early = repair.early, None
        settled = self.acknowledged(early) if early is not None else None
        return (settled, early) if settled is not None and early is not None else None

    def acknowledged(self, applied: CopyApplied) -> Repair | None:
        """The repair this acknowledgement settles, if any (the copy applied it or something later).
        One read before the repair itself is kept, to be recognised when the repair is (`delivered`)."""
        key = (applied.copy_agency, applied.envelope.listing_id)
        repair = self._open.get(key)
        if repair is None:
            return None
        if repair.position is None:
            if repair.early is None or (repair.early.partition, repair.early.offset) <= (
                applied.partition,
                applied.offset,
            ):
                repair.early = applied
            return None
        partition, offset = repair.position
        if applied.partition != partition or applied.offset < offset:
            return None
        del self._open[key]
        del self._by_event[repair.change.envelope.event_id]
        return repair

    def overdue(self, now: datetime) -> list[Repair]:
        """Repairs past their deadline, each returned once (to be escalated)."""
        late = [r for r in self._open.values() if not r.escalated and now > r.deadline]
        for repair in late:
            repair.escalated = True
        return late

    def __len__(self) -> int:
        return len(self._open)


REPAIR_KEY_SUFFIX = "|repair"


def repair_key(listing_id: str) -> str:
    """The view-topic key of a listing's repairs: not the listing's own, so compaction never lets a
    repair replace the ledger's latest change of the listing."""
    return f"{listing_id}{REPAIR_KEY_SUFFIX}"
