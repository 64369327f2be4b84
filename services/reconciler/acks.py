"""Acknowledgements: every view change the ledger emitted must be applied by its copy in time.

A pure tracker fed with view changes, `CopyApplied` acknowledgements and a clock.
An acknowledgement of version v settles every pending change of that listing up
to v: a copy reading a compacted view topic may legitimately skip versions that
were superseded before it read them. Each overdue change is reported once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.core.events import CopyApplied, ViewChanged

Key = tuple[str, str]  # (agency, listing_id)


@dataclass(frozen=True)
class Sla:
    """How long a copy may take to apply a change; revocations (deletes) are held to a shorter one."""

    listing: timedelta
    revocation: timedelta

    def of(self, op: str) -> timedelta:
        return self.revocation if op == "delete" else self.listing


@dataclass(frozen=True)
class Expectation:
    """A view change a copy has not acknowledged yet."""

    agency: str
    listing_id: str
    version: int
    op: str
    emitted_at: datetime
    deadline: datetime


@dataclass(frozen=True)
class Applied:
    """What a copy last acknowledged of a listing, and where in its view topic that change was."""

    version: int
    op: str
    applied_at: datetime
    partition: int = 0
    offset: int = 0

    @property
    def at(self) -> tuple[int, int]:
        return self.partition, self.offset


def applied_of(ack: CopyApplied) -> Applied:
    return Applied(ack.envelope.version, ack.op, ack.applied_at, ack.partition, ack.offset)


@dataclass(frozen=True)
class Overdue:
    """An expectation past its deadline, with what the copy last applied of that listing."""

    expectation: Expectation
    last_applied: Applied | None
    overdue_by: timedelta


@dataclass(frozen=True)
class Settled:
    """A change that became consistent in a copy, and how long it took from its emission."""

    agency: str
    listing_id: str
    version: int
    emitted_at: datetime
    seconds: float
    late: bool  # reported as a missing acknowledgement before this one came


class AckTracker:
    """Pending view changes per copy and listing, settled by acknowledgements."""

    def __init__(self, sla: Sla) -> None:
        self.sla = sla
        self._pending: dict[Key, list[Expectation]] = {}
        self._applied: dict[Key, Applied] = {}
        self._announced: dict[Key, int] = {}
        self._reported: set[tuple[str, str, int]] = set()

    def expect(self, change: ViewChanged, emitted_at: datetime) -> list[Settled]:
        """A view change was emitted; settled at once if its acknowledgement was read first."""
        key = (change.view_agency, change.envelope.listing_id)
        version = change.envelope.version
        self._announced[key] = max(version, self._announced.get(key, 0))
        deadline = emitted_at + self.sla.of(change.op)
        wanted = Expectation(*key, version, change.op, emitted_at, deadline)
        applied = self._applied.get(key)
        if applied is not None and applied.version >= version:
            return [_settle(wanted, applied.applied_at, late=False)]  # nothing was reported yet
        self._pending.setdefault(key, []).append(wanted)
        return []

    def acknowledge(self, applied: CopyApplied) -> list[Settled]:
        """A copy applied a version: settle every pending change of that listing up to it."""
        key = (applied.copy_agency, applied.envelope.listing_id)
        version = applied.envelope.version
        last = self._applied.get(key)
        if last is None or version >= last.version:
            self._applied[key] = applied_of(applied)
        waiting = self._pending.pop(key, [])
        still = [e for e in waiting if e.version > version]
        if still:
            self._pending[key] = still
        done = [e for e in waiting if e.version <= version]
        return [self._settled(e, applied.applied_at) for e in done]

    def _settled(self, wanted: Expectation, at: datetime) -> Settled:
        marker = (wanted.agency, wanted.listing_id, wanted.version)
        late = marker in self._reported
        self._reported.discard(marker)
        return _settle(wanted, at, late)

    def overdue(self, now: datetime, horizon: datetime | None = None) -> list[Overdue]:
        """Expectations past their deadline, each returned the first time it is found overdue.

        `horizon`: acknowledgements are read up to then, so only a deadline before it can be
        judged (default `now`).
        """
        until = now if horizon is None else min(now, horizon)
        found = []
        for key, waiting in self._pending.items():
            for wanted in waiting:
                marker = (*key, wanted.version)
                if until > wanted.deadline and marker not in self._reported:
                    self._reported.add(marker)
                    found.append(Overdue(wanted, self._applied.get(key), now - wanted.deadline))
        return found

    def last(self, agency: str, listing_id: str) -> Applied | None:
        """The copy's acknowledgement of the listing's latest version (None: none read)."""
        return self._applied.get((agency, listing_id))

    def acked(self, agency: str, listing_id: str) -> int:
        """The latest version this copy acknowledged for the listing (0: none)."""
        applied = self._applied.get((agency, listing_id))
        return applied.version if applied else 0

    def announced(self, agency: str, listing_id: str) -> int:
        """The latest version the ledger announced on this agency's view topic (0: none)."""
        return self._announced.get((agency, listing_id), 0)

    def pending(self) -> int:
        return sum(len(waiting) for waiting in self._pending.values())

    def pending_by_agency(self) -> dict[str, int]:
        """Changes awaiting acknowledgement, per copy (for the operator page)."""
        out: dict[str, int] = {}
        for (agency, _), waiting in self._pending.items():
            out[agency] = out.get(agency, 0) + len(waiting)
        return out


def _settle(wanted: Expectation, at: datetime, late: bool) -> Settled:
    seconds = max(0.0, (at - wanted.emitted_at).total_seconds())
    return Settled(wanted.agency, wanted.listing_id, wanted.version, wanted.emitted_at, seconds, late)
