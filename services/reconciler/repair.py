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

from services.core.events import Envelope, Finding, ListingState, ViewChanged
from services.core.topics import RECONCILER
from services.core.views import ViewRow, delete_change, upsert_change
from services.reconciler.acks import Applied
from services.reconciler.model import Difference

REPAIR_NAMESPACE = uuid.UUID("c4e0b7a1-3f6d-4e92-b8a5-1d7c2e9f6a30")


def repair_id(detection_id: str) -> str:
    """The event id of the repair planned for a detection: the same in every reconciler."""
    return str(uuid.uuid5(REPAIR_NAMESPACE, detection_id))


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
        event_id=repair_id(detection.finding_id),
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
    """One repair in flight: what was found, and where the repair landed in the view topic."""

    detection: Finding
    deadline: datetime
    position: tuple[int, int] | None = None
    escalated: bool = False
    early: Applied | None = None  # the copy's latest ack of the listing, read before the repair itself

    @property
    def key(self) -> tuple[str, str]:
        return self.detection.copy_agency, self.detection.envelope.listing_id

    @property
    def event_id(self) -> str:
        return repair_id(self.detection.finding_id)


class RepairBook:
    """Repairs sent and not yet acknowledged, one per agency and listing at most: this reconciler's,
    and those it read in the log (`adopt`: a standby taking over, or a restart, awaits the repair
    its predecessor sent instead of sending another or never settling it)."""

    def __init__(self, sla: timedelta) -> None:
        self.sla = sla
        self._open: dict[tuple[str, str], Repair] = {}
        self._by_event: dict[str, Repair] = {}
        self._unclaimed: dict[str, tuple[int, int]] = {}  # repair read, its detection not yet: where

    def open(self, detection: Finding, now: datetime) -> Repair:
        repair = Repair(detection, now + self.sla)
        self._open[repair.key] = repair
        self._by_event[repair.event_id] = repair
        return repair

    def adopt(self, detection: Finding, latest: Applied | None) -> Repair | None:
        """A stale detection read in the log: its repair is awaited as if sent here, from where it was
        read if it was, settled by the copy's latest ack if that came after it (returned then)."""
        event_id = repair_id(detection.finding_id)
        if event_id in self._by_event:
            return None
        repair = Repair(detection, detection.detected_at + self.sla)
        self._open[repair.key] = repair
        self._by_event[event_id] = repair
        repair.position = self._unclaimed.pop(event_id, None)
        return self.acknowledged(latest, repair.key) if latest is not None else None

    def forget(self, detection_id: str) -> None:
        """The detection was closed (repaired, resolved): its repair is no longer awaited."""
        event_id = repair_id(detection_id)
        self._unclaimed.pop(event_id, None)
        repair = self._by_event.pop(event_id, None)
        if repair is not None and self._open.get(repair.key) is repair:
            del self._open[repair.key]

    def pending(self, agency: str, listing_id: str) -> bool:
        return (agency, listing_id) in self._open

    def delivered(self, event_id: str, partition: int, offset: int) -> tuple[Repair, Applied] | None:
        """The repair was read back from the view topic: now its acknowledgement can be recognised,
        also one read before it (the reconciler reads the acks and the view topic side by side, so
        a copy's ack of a repair may come first); returned with that ack when it settles it. One
        whose detection is not read yet is remembered until it is (`adopt`)."""
        repair = self._by_event.get(event_id)
        if repair is None:
            self._unclaimed[event_id] = (partition, offset)
            return None
        repair.position = (partition, offset)
        early, repair.early = repair.early, None
        settled = self.acknowledged(early, repair.key) if early is not None else None
        return (settled, early) if settled is not None and early is not None else None

    def acknowledged(self, applied: Applied, key: tuple[str, str]) -> Repair | None:
        """The repair this acknowledgement (of `key`: agency, listing) settles, if any (the copy
        applied it or something later). One read before the repair itself is kept, to be
        recognised when the repair is (`delivered`)."""
        repair = self._open.get(key)
        if repair is None:
            return None
        if repair.position is None:
            if repair.early is None or repair.early.at <= applied.at:
                repair.early = applied
            return None
        partition, offset = repair.position
        if applied.partition != partition or applied.offset < offset:
            return None
        del self._open[key]
        del self._by_event[repair.event_id]
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
