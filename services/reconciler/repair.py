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

import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.core.events import Envelope, Finding, ListingState, ViewChanged
from services.core.serde import decode, encode
from services.core.topics import RECONCILER
from services.core.views import ViewRow, delete_change, upsert_change
from services.reconciler.acks import Applied, in_memory, micros, moment
from services.reconciler.model import Difference

REPAIR_NAMESPACE = uuid.UUID("c4e0b7a1-3f6d-4e92-b8a5-1d7c2e9f6a30")
SCHEMA = """
CREATE TABLE IF NOT EXISTS repairs (event_id TEXT PRIMARY KEY, detection BLOB NOT NULL,
    deadline INTEGER NOT NULL, partition INTEGER, offset INTEGER, escalated INTEGER NOT NULL, early TEXT)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unclaimed (event_id TEXT PRIMARY KEY, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL) WITHOUT ROWID;
"""
TABLES = ("repairs", "unclaimed")


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
    its predecessor sent instead of sending another or never settling it).

    Held in memory and written through to rows of `db` (the reconciler's snapshot: a restart
    awaits the repairs open when it stopped, though it reads only the tail of the log)."""

    def __init__(self, sla: timedelta, db: sqlite3.Connection | None = None) -> None:
        self.sla = sla
        self._db = db or in_memory(SCHEMA)
        self._open: dict[tuple[str, str], Repair] = {}
        self._by_event: dict[str, Repair] = {}
        self.reload()

    def reload(self) -> None:
        """The repairs open as stored (none: a new snapshot, or one emptied)."""
        self._open, self._by_event = {}, {}
        for raw, deadline, partition, offset, escalated, early in self._db.execute(
            "SELECT detection, deadline, partition, offset, escalated, early FROM repairs ORDER BY deadline"
        ).fetchall():
            detection = decode(raw, "findings")
            assert isinstance(detection, Finding)
            position = None if partition is None else (partition, offset)
            repair = Repair(detection, moment(deadline), position, bool(escalated), _early(early))
            self._open[repair.key], self._by_event[repair.event_id] = repair, repair

    def open(self, detection: Finding, now: datetime) -> Repair:
        return self._start(Repair(detection, now + self.sla))

    def _start(self, repair: Repair) -> Repair:
        """Await `repair`; one awaited before for the same listing is superseded by it."""
        before = self._open.get(repair.key)
        if before is not None:
            self._drop(before)
        self._open[repair.key], self._by_event[repair.event_id] = repair, repair
        self._keep(repair)
        return repair

    def _keep(self, repair: Repair) -> None:
        where = repair.position or (None, None)
        early = None if repair.early is None else json.dumps(_fields(repair.early))
        self._db.execute("INSERT OR REPLACE INTO repairs VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (repair.event_id, encode(repair.detection), micros(repair.deadline), *where,
                          int(repair.escalated), early))  # fmt: skip

    def _drop(self, repair: Repair) -> None:
        if self._open.get(repair.key) is repair:
            del self._open[repair.key]
        self._by_event.pop(repair.event_id, None)
        self._db.execute("DELETE FROM repairs WHERE event_id = ?", (repair.event_id,))

    def adopt(self, detection: Finding, latest: Applied | None) -> Repair | None:
        """A stale detection read in the log: its repair is awaited as if sent here, from where it was
        read if it was, settled by the copy's latest ack if that came after it (returned then)."""
        event_id = repair_id(detection.finding_id)
        if event_id in self._by_event:
            return None
        found = self._db.execute("SELECT partition, offset FROM unclaimed WHERE event_id = ?", (event_id,))
        row = found.fetchone()
        self._db.execute("DELETE FROM unclaimed WHERE event_id = ?", (event_id,))
        where = (int(row[0]), int(row[1])) if row else None
        repair = self._start(Repair(detection, detection.detected_at + self.sla, where))
        return self.acknowledged(latest, repair.key) if latest is not None else None

    def forget(self, detection_id: str) -> None:
        """The detection was closed (repaired, resolved): its repair is no longer awaited."""
        event_id = repair_id(detection_id)
        self._db.execute("DELETE FROM unclaimed WHERE event_id = ?", (event_id,))
        repair = self._by_event.get(event_id)
        if repair is not None:
            self._drop(repair)

    def pending(self, agency: str, listing_id: str) -> bool:
        return (agency, listing_id) in self._open

    def awaited(self, detection_id: str) -> bool:
        """Whether the repair of that detection is in flight, its acknowledgement not overdue yet."""
        repair = self._by_event.get(repair_id(detection_id))
        return repair is not None and not repair.escalated

    def delivered(self, event_id: str, partition: int, offset: int) -> tuple[Repair, Applied] | None:
        """The repair was read back from the view topic: now its acknowledgement can be recognised,
        also one read before it (the reconciler reads the acks and the view topic side by side, so
        a copy's ack of a repair may come first); returned with that ack when it settles it. One
        whose detection is not read yet is remembered until it is (`adopt`)."""
        repair = self._by_event.get(event_id)
        if repair is None:
            self._db.execute(
                "INSERT OR REPLACE INTO unclaimed VALUES (?, ?, ?)", (event_id, partition, offset)
            )
            return None
        repair.position = (partition, offset)
        early, repair.early = repair.early, None
        self._keep(repair)
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
                self._keep(repair)
            return None
        partition, offset = repair.position
        if applied.partition != partition or applied.offset < offset:
            return None
        self._drop(repair)
        return repair

    def overdue(self, now: datetime) -> list[Repair]:
        """Repairs past their deadline, each returned once (to be escalated)."""
        late = [r for r in self._open.values() if not r.escalated and now > r.deadline]
        for repair in late:
            repair.escalated = True
            self._keep(repair)
        return late

    def __len__(self) -> int:
        return len(self._open)


def _fields(applied: Applied) -> list[object]:
    return [applied.version, applied.op, micros(applied.applied_at), applied.partition, applied.offset]


def _early(stored: str | None) -> Applied | None:
    if stored is None:
        return None
    version, op, at, partition, offset = json.loads(stored)
    return Applied(version, op, moment(at), partition, offset)


REPAIR_KEY_SUFFIX = "|repair"


def repair_key(listing_id: str) -> str:
    """The view-topic key of a listing's repairs: not the listing's own, so compaction never lets a
    repair replace the ledger's latest change of the listing."""
    return f"{listing_id}{REPAIR_KEY_SUFFIX}"
