"""Which findings are already in the log, and which detections are still open.

Read back from the `findings` topic (so a restart, or a standby taking over, knows what
was published before it) and fed with what this reconciler publishes. A finding whose id
is known is never published again; a detection stays open until a closing finding
(acknowledged late, repaired, resolved) derived from its id is in the log.

Every id ever seen, and the open detections, are rows (in the reconciler's snapshot, so a
restart reads only the tail of `findings`); the open detections are also held in memory.
"""

from __future__ import annotations

import sqlite3

from services.core.events import Finding
from services.core.serde import decode, encode
from services.reconciler import findings
from services.reconciler.acks import in_memory

SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (finding_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS detections (finding_id TEXT PRIMARY KEY, raw BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unsent (finding_id TEXT PRIMARY KEY, raw BLOB NOT NULL) WITHOUT ROWID;
"""
TABLES = ("seen", "detections", "unsent")


class FindingBook:
    def __init__(self, db: sqlite3.Connection | None = None) -> None:
        self._db = db or in_memory(SCHEMA)
        self._open: dict[str, Finding] = {}
        self._closes: dict[str, str] = {}  # id of a closing finding -> the detection it closes
        self.reload()

    def reload(self) -> None:
        """The open detections as stored (none: a new snapshot, or one emptied)."""
        self._open, self._closes = {}, {}
        for (raw,) in self._db.execute("SELECT raw FROM detections").fetchall():
            detection = decode(raw, "findings")
            assert isinstance(detection, Finding)
            self._opened(detection)

    def _opened(self, detection: Finding) -> None:
        self._open[detection.finding_id] = detection
        for kind in findings.CLOSERS:
            self._closes[findings.finding_id(kind, detection.finding_id)] = detection.finding_id

    def seen(self, finding_id: str) -> bool:
        """Whether the finding is in the log (read back, or published by this reconciler)."""
        found = self._db.execute("SELECT 1 FROM seen WHERE finding_id = ?", (finding_id,))
        return found.fetchone() is not None

    def note(self, finding: Finding) -> str | None:
        """Remember a finding as in the log; the id of the detection it closes, if it closes one."""
        self._db.execute("INSERT OR IGNORE INTO seen VALUES (?)", (finding.finding_id,))
        if finding.kind in findings.DETECTIONS:
            self._opened(finding)
            self._db.execute(
                "INSERT OR REPLACE INTO detections VALUES (?, ?)", (finding.finding_id, encode(finding))
            )
        closed = self._closes.pop(finding.finding_id, None)
        if closed is not None:
            self._open.pop(closed, None)
            self._db.execute("DELETE FROM detections WHERE finding_id = ?", (closed,))
        return closed

    def is_open(self, finding_id: str) -> bool:
        return finding_id in self._open

    def detections(self) -> list[Finding]:
        """Every open detection, oldest first."""
        return sorted(self._open.values(), key=lambda f: f.detected_at)

    def open_for(self, agency: str) -> list[Finding]:
        """Open detections about `agency`'s copy."""
        return [f for f in self._open.values() if f.copy_agency == agency]

    def open_stale(self, agency: str, listing_id: str) -> Finding | None:
        """The open detection of a stale listing in `agency`'s copy, if there is one."""
        about = (agency, listing_id)
        stale = (f for f in self._open.values() if f.kind in findings.STALE_KINDS)
        return next((f for f in stale if (f.copy_agency, f.envelope.listing_id) == about), None)

    def open_of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self._open.values() if f.kind == kind]

    def open_by_kind(self) -> dict[str, int]:
        """How many detections of each kind are open (every kind, zero included)."""
        counts = dict.fromkeys(findings.DETECTIONS, 0)
        for finding in self._open.values():
            counts[finding.kind] += 1
        return counts

    def __len__(self) -> int:
        return len(self._open)


class Unsent:
    """Findings decided while this reconciler may not publish them (a standby, a replay), kept (in
    rows too: a restart must not lose what its snapshot counts as published) until it may, or until
    they are read in the log, published by another."""

    def __init__(self, db: sqlite3.Connection | None = None) -> None:
        self._db = db or in_memory(SCHEMA)
        self._held: dict[str, Finding] = {}
        self.reload()

    def reload(self) -> None:
        self._held = {}
        for (raw,) in self._db.execute("SELECT raw FROM unsent").fetchall():
            finding = decode(raw, "findings")
            assert isinstance(finding, Finding)
            self._held[finding.finding_id] = finding

    def hold(self, found: list[Finding]) -> None:
        for finding in found:
            self._held[finding.finding_id] = finding
        self._db.executemany("INSERT OR REPLACE INTO unsent VALUES (?, ?)",
                             [(f.finding_id, encode(f)) for f in found])  # fmt: skip

    def drop(self, finding_id: str) -> None:
        """The finding is in the log: not to be sent again."""
        if self._held.pop(finding_id, None) is not None:
            self._db.execute("DELETE FROM unsent WHERE finding_id = ?", (finding_id,))

    def take(self) -> list[Finding]:
        """Every finding held, to be sent now."""
        held, self._held = list(self._held.values()), {}
        self._db.execute("DELETE FROM unsent")
        return held

    def __bool__(self) -> bool:
        return bool(self._held)
