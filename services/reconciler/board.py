"""What the operator page shows, recorded by the runner as it reads the log (`page.py` renders it).

Everything here comes from what the reconciler already reads: the ledger's states, the view
changes (the ledger's and the reconciler's repairs), each copy's acknowledgements and digests,
and the findings read back from their topic, so a restarted reconciler shows the same page.
The runner alone writes (from its thread); the HTTP server reads a `Snapshot`, copied under
the lock. Listing timelines are kept for the most recently touched `TIMELINES` listings
(`accord audit timeline` has every listing's whole history).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.core.events import CopyApplied, CopyDigest, Event, Finding, ListingState, ViewChanged
from services.core.topics import RECONCILER
from services.reconciler import findings
from services.reconciler.consistency import Summary
from services.reconciler.repair import repair_id

Times = dict[tuple[str, str], Summary]  # (agency, family) -> time to consistency
TIMELINES = 10_000
ENTRIES = 100  # per listing
CLOSED = 50  # closed findings kept for the page


@dataclass(frozen=True)
class CopyFigures:
    """One agency's copy as the runner judges it at a tick."""

    agency: str
    pending: int = 0  # view changes awaiting its acknowledgement
    behind: int = 0  # view messages the reconciler read that the copy's last digest had not reached
    last_applied: datetime | None = None  # the copy's last acknowledged apply
    digest_at: datetime | None = None  # when its last digest was taken
    rows: int | None = None  # rows in its last digest


@dataclass
class Case:
    """A detection and what was done about it: detected, repair sent, escalated, then how it closed."""

    detection: Finding
    done: str = "detected"
    closed_at: datetime | None = None


@dataclass(frozen=True)
class Snapshot:
    copies: list[CopyFigures]
    open: list[Case]
    closed: list[Case]
    times: Times
    read: int
    taken_at: datetime | None


@dataclass
class Board:
    """The page's record; `note` every event read, `figures` at every tick."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _copies: dict[str, CopyFigures] = field(default_factory=dict)
    _open: dict[str, Case] = field(default_factory=dict)
    _closed: list[Case] = field(default_factory=list)
    # id of a follow-up finding or repair -> (its kind, the detection it follows)
    _follow_ups: dict[str, tuple[str, str]] = field(default_factory=dict)
    _timelines: OrderedDict[str, list[tuple[datetime, str]]] = field(default_factory=OrderedDict)
    _times: Times = field(default_factory=dict)
    _applied_at: dict[str, datetime] = field(default_factory=dict)
    _digests: dict[str, CopyDigest] = field(default_factory=dict)
    _read: int = 0
    _taken_at: datetime | None = None

    def note(self, event: Event, at: datetime) -> None:
        with self._lock:
            self._read += 1
            line = self._story(event)
            if line is not None:
                self._remember(event.envelope.listing_id, at, line)

    def figures(self, now: datetime, pending: dict[str, int], behind: dict[str, int], times: Times) -> None:
        """The runner's judgement at a tick: per agency, changes awaiting acknowledgement and
        messages its copy's last digest had not reached; the time-to-consistency summary."""
        with self._lock:
            self._copies = {a: CopyFigures(a, pending.get(a, 0), behind.get(a, 0)) for a in sorted(pending)}
            self._times, self._taken_at = dict(times), now

    def snapshot(self) -> Snapshot:
        with self._lock:
            copies = [self._with_reports(c) for c in self._copies.values()]
            cases = [replace(c) for c in self._open.values()]
            closed = [replace(c) for c in self._closed]
            return Snapshot(copies, cases, closed, dict(self._times), self._read, self._taken_at)

    def _with_reports(self, figures: CopyFigures) -> CopyFigures:
        digest = self._digests.get(figures.agency)
        if digest is not None:
            figures = replace(figures, digest_at=digest.taken_at, rows=digest.rows)
        return replace(figures, last_applied=self._applied_at.get(figures.agency))

    def timeline(self, listing_id: str) -> list[tuple[datetime, str]]:
        with self._lock:
            return sorted(self._timelines.get(listing_id, []), key=lambda entry: entry[0])

    # --- the story of each event ---------------------------------------------------

    def _story(self, event: Event) -> str | None:
        if isinstance(event, ListingState):
            return f"ledger: v{event.envelope.version} {event.status} (by {event.envelope.agency})"
        if isinstance(event, ViewChanged):
            return self._view(event)
        if isinstance(event, CopyApplied):
            last = self._applied_at.get(event.copy_agency)
            self._applied_at[event.copy_agency] = max(last, event.applied_at) if last else event.applied_at
            return f"{event.copy_agency}'s copy applied v{event.envelope.version} ({event.op})"
        if isinstance(event, Finding):
            return self._finding(event)
        if isinstance(event, CopyDigest):
            self._digests[event.copy_agency] = event
        return None

    def _view(self, change: ViewChanged) -> str:
        if change.envelope.agency != RECONCILER:
            return f"view of {change.view_agency}: {change.op} v{change.envelope.version}"
        _, detection = self._follow_ups.get(change.envelope.event_id, ("", ""))
        if detection in self._open and self._open[detection].done == "detected":
            self._open[detection].done = "repair sent"
        return f"repair sent to {change.view_agency}: {change.op} v{change.envelope.version}"

    def _finding(self, finding: Finding) -> str:
        if finding.kind in findings.DETECTIONS:
            self._open.setdefault(finding.finding_id, Case(finding))
            fid = finding.finding_id
            for kind in (*findings.CLOSERS, findings.ESCALATED):
                self._follow_ups[findings.finding_id(kind, fid)] = (kind, fid)
            self._follow_ups[repair_id(fid)] = ("repair", fid)
        kind, detection = self._follow_ups.pop(finding.finding_id, ("", ""))
        case = self._open.get(detection)
        if case is not None and kind == findings.ESCALATED:
            case.done = "escalated"
        elif case is not None and kind in findings.CLOSERS:
            del self._open[detection]
            case.done, case.closed_at = kind, finding.detected_at
            self._closed = [case, *self._closed][:CLOSED]
        return f"finding {finding.kind} on {finding.copy_agency}'s copy: {finding.detail}"

    def _remember(self, listing_id: str, at: datetime, line: str) -> None:
        if not listing_id:
            return
        entries = self._timelines.setdefault(listing_id, [])
        self._timelines.move_to_end(listing_id)
        entries.append((at, line))
        del entries[:-ENTRIES]
        while len(self._timelines) > TIMELINES:
            self._timelines.popitem(last=False)
