"""The reconciler's snapshot: everything it folds from the log, in one SQLite file, committed with
the position of every partition it reads (issue 14: a restart with ten million listings reads
only the log's tail, of every topic, not `copies.applied`, `views` or `findings` from their start).

One transaction holds, per batch read: the expected views (`expected.py`), the latest announced
version and acknowledgement per copy and listing and the changes still awaited (`acks.py`), every
finding id seen and the open detections (`open_findings.py`), the repairs awaited (`repair.py`),
each copy's last digest (`DIGESTS`) and the positions they reflect (`core/snapshot.py`, whose
rules empty a snapshot of another log). Two reconcilers each claim a file of their own.
"""

from __future__ import annotations

from pathlib import Path

from services.core.snapshot import Snapshot
from services.reconciler import acks, expected, open_findings, repair

DIGESTS = """
CREATE TABLE IF NOT EXISTS digests (agency TEXT PRIMARY KEY, raw BLOB NOT NULL) WITHOUT ROWID;
"""
SCHEMA = expected.SCHEMA + acks.SCHEMA + open_findings.SCHEMA + repair.SCHEMA + DIGESTS
TABLES = (*expected.TABLES, *acks.TABLES, *open_findings.TABLES, *repair.TABLES, "digests")


def claim_snapshot(folder: Path | None, name: str) -> Snapshot:
    """The reconciler's snapshot under `folder`, one of its own (a standby holds another); in memory
    without a folder."""
    return Snapshot.claimed(folder, name, SCHEMA, TABLES)
