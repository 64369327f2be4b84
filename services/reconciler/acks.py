"""Acknowledgements: every view change the ledger emitted must be applied by its copy in time.

A pure tracker fed with view changes, `CopyApplied` acknowledgements and a clock.
An acknowledgement of version v settles every pending change of that listing up
to v: a copy reading a compacted view topic may legitimately skip versions that
were superseded before it read them. Each overdue change is reported once.

Its state is in SQLite (issue 14: ten million listings per copy fit neither in memory
nor in a re-read of `copies.applied` from its start): per copy and listing the latest
version announced and the latest acknowledgement, and every change still awaited. The
reconciler keeps it in its snapshot, committed with the positions it reflects
(`kept.py`); alone (the report, tests) it is in memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.core.events import CopyApplied, ViewChanged

Key = tuple[str, str]  # (agency, listing_id)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
SCHEMA = """
CREATE TABLE IF NOT EXISTS acks (agency TEXT NOT NULL, listing_id TEXT NOT NULL, announced INTEGER NOT NULL,
    version INTEGER NOT NULL, op TEXT NOT NULL, applied_at INTEGER NOT NULL, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, PRIMARY KEY (agency, listing_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS awaited (agency TEXT NOT NULL, listing_id TEXT NOT NULL, version INTEGER NOT NULL,
    op TEXT NOT NULL, emitted_at INTEGER NOT NULL, deadline INTEGER NOT NULL, reported INTEGER NOT NULL,
    PRIMARY KEY (agency, listing_id, version)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS awaited_due ON awaited (deadline) WHERE reported = 0;
"""
TABLES = ("acks", "awaited")
NO_ACK = -1  # `acks.version` of a listing announced but never acknowledged


def micros(at: datetime) -> int:
    """A time as integer microseconds since the epoch: stored, compared and ordered exactly."""
    return (at - EPOCH) // MICROSECOND


def moment(us: int) -> datetime:
    return EPOCH + us * MICROSECOND


def in_memory(schema: str) -> sqlite3.Connection:
    """A connection of this process alone, holding `schema` (a tracker or a book used on its own)."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(schema)
    return db


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
    """Pending view changes per copy and listing, settled by acknowledgements (rows of `db`)."""

    def __init__(self, sla: Sla, db: sqlite3.Connection | None = None) -> None:
        self.sla = sla
        self._db = db or in_memory(SCHEMA)
        self._pending: dict[str, int] = {}  # agency -> changes awaited, kept as they come
        self.reload()

    def reload(self) -> None:
        """Count the changes awaited, once (opened, or the snapshot emptied): the operator page asks
        every second, and a copy down for hours leaves millions awaited to count each time."""
        query = "SELECT agency, count(*) FROM awaited GROUP BY agency"
        self._pending = {agency: int(n) for agency, n in self._db.execute(query).fetchall()}

    def expect(self, change: ViewChanged, emitted_at: datetime) -> list[Settled]:
        """A view change was emitted; settled at once if its acknowledgement was read first."""
        key = (change.view_agency, change.envelope.listing_id)
        version = change.envelope.version
        self._db.execute(
            "INSERT INTO acks VALUES (?, ?, ?, ?, '', 0, 0, 0) "
            "ON CONFLICT DO UPDATE SET announced = max(announced, excluded.announced)",
            (*key, version, NO_ACK),
        )
        deadline = emitted_at + self.sla.of(change.op)
        wanted = Expectation(*key, version, change.op, emitted_at, deadline)
        applied = self.last(*key)
        if applied is not None and applied.version >= version:
            return [_settle(wanted, applied.applied_at, late=False)]  # nothing was reported yet
        row = (*key, version, change.op, micros(emitted_at), micros(deadline))
        added = self._db.execute("INSERT OR IGNORE INTO awaited VALUES (?, ?, ?, ?, ?, ?, 0)", row)
        self._pending[key[0]] = self._pending.get(key[0], 0) + added.rowcount  # 0: awaited already
        return []

    def acknowledge(self, applied: CopyApplied) -> list[Settled]:
        """A copy applied a version: settle every pending change of that listing up to it."""
        key = (applied.copy_agency, applied.envelope.listing_id)
        version = applied.envelope.version
        last = self.last(*key)
        if last is None or version >= last.version:
            at = (version, applied.op, micros(applied.applied_at), applied.partition, applied.offset)
            self._db.execute(
                "INSERT INTO acks VALUES (?, ?, 0, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET version = "
                "excluded.version, op = excluded.op, applied_at = excluded.applied_at, "
                "partition = excluded.partition, offset = excluded.offset",
                (*key, *at),
            )
        where = "agency = ? AND listing_id = ? AND version <= ?"
        done = list(self._awaited(where, (*key, version)))
        settled = self._db.execute(f"DELETE FROM awaited WHERE {where}", (*key, version))
        self._pending[key[0]] = self._pending.get(key[0], 0) - settled.rowcount
        return [_settle(wanted, applied.applied_at, late) for wanted, late in done]

    def _awaited(self, where: str, args: tuple[object, ...]) -> Iterator[tuple[Expectation, bool]]:
        query = ("SELECT agency, listing_id, version, op, emitted_at, deadline, reported FROM awaited "
                 f"WHERE {where} ORDER BY deadline, agency, listing_id, version")  # fmt: skip
        for agency, lid, version, op, emitted, deadline, reported in self._db.execute(query, args).fetchall():
            yield Expectation(agency, lid, version, op, moment(emitted), moment(deadline)), bool(reported)

    def overdue(self, now: datetime, horizon: datetime | None = None) -> list[Overdue]:
        """Expectations past their deadline, each returned the first time it is found overdue.

        `horizon`: acknowledgements are read up to then, so only a deadline before it can be
        judged (default `now`).
        """
        until = micros(now if horizon is None else min(now, horizon))
        found = [wanted for wanted, _ in self._awaited("reported = 0 AND deadline < ?", (until,))]
        mark = "UPDATE awaited SET reported = 1 WHERE agency = ? AND listing_id = ? AND version = ?"
        self._db.executemany(mark, [(w.agency, w.listing_id, w.version) for w in found])
        return [Overdue(w, self.last(w.agency, w.listing_id), now - w.deadline) for w in found]

    def last(self, agency: str, listing_id: str) -> Applied | None:
        """The copy's acknowledgement of the listing's latest version (None: none read)."""
        row = self._db.execute(
            "SELECT version, op, applied_at, partition, offset FROM acks WHERE agency = ? AND listing_id = ?",
            (agency, listing_id),
        ).fetchone()
        if row is None or row[0] == NO_ACK:
            return None
        return Applied(row[0], row[1], moment(row[2]), row[3], row[4])

    def acked(self, agency: str, listing_id: str) -> int:
        """The latest version this copy acknowledged for the listing (0: none)."""
        applied = self.last(agency, listing_id)
        return applied.version if applied else 0

    def announced(self, agency: str, listing_id: str) -> int:
        """The latest version the ledger announced on this agency's view topic (0: none)."""
        row = self._db.execute(
            "SELECT announced FROM acks WHERE agency = ? AND listing_id = ?", (agency, listing_id)
        ).fetchone()
        return int(row[0]) if row else 0

    def pending(self) -> int:
        return sum(self._pending.values())

    def pending_by_agency(self) -> dict[str, int]:
        """Changes awaiting acknowledgement, per copy (for the operator page)."""
        return {agency: n for agency, n in self._pending.items() if n}


def _settle(wanted: Expectation, at: datetime, late: bool) -> Settled:
    seconds = max(0.0, (at - wanted.emitted_at).total_seconds())
    return Settled(wanted.agency, wanted.listing_id, wanted.version, wanted.emitted_at, seconds, late)
