"""A service's state on disk with the log positions it reflects: a snapshot plus the log's tail.

Issue 14: ten million listings neither fit in Python memory nor re-read in seconds. A
service keeping what it folds from the log in a `Snapshot` (one SQLite file) writes its
rows and the positions they were read up to in one transaction (`commit`), so on a
restart it opens the file and reads only what follows; a batch cut short by a crash was
never committed and is read again (the service's fold must take a record twice the same
as once). `resume_from` decides, against the broker, whether the file describes this log
at all: one read from another cluster, or whose position lies outside what a partition
holds now (the topic recreated, or records deleted past it), is emptied and the log read
from its start, never trusted. `":memory:"` keeps a snapshot for one process only.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

log = logging.getLogger("accord.snapshot")
Partition = tuple[str, int]
RETRY_S = 0.2
NO_LEADER_YET = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}
SLOTS = 16  # snapshots of one name one host may hold at once (an HTTP server, import workers, a standby)
PLUMBING = """
CREATE TABLE IF NOT EXISTS positions (topic TEXT NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


class Snapshot:
    """One SQLite connection, shared by threads under `lock`; a transaction is always open.

    A read on it sees the batch being written (as a dict would); only `commit` makes it durable."""

    def __init__(self, path: Path | str, schema: str, tables: tuple[str, ...], held: int = -1) -> None:
        self.path, self.tables, self._held = str(path), (*tables, "positions", "meta"), held
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + schema + PLUMBING)
        self.db.execute("BEGIN")

    def commit(self, positions: Mapping[Partition, int]) -> None:
        """Make what was written since the last commit durable, with the positions it was read up to."""
        with self.lock:
            self.db.executemany("INSERT OR REPLACE INTO positions VALUES (?, ?, ?)",
                                [(t, p, o) for (t, p), o in positions.items()])  # fmt: skip
            self.db.execute("COMMIT")
            self.db.execute("BEGIN")

    def positions(self) -> dict[Partition, int]:
        """The next offset to read of each partition, as last committed with what it brought."""
        with self.lock:
            rows = self.db.execute("SELECT topic, partition, next_offset FROM positions").fetchall()
        return {(t, p): o for t, p, o in rows}

    def meta(self, name: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def forget(self, cluster: str) -> None:
        """Empty every table: the snapshot is to be made again from `cluster`'s log."""
        with self.lock:
            for table in self.tables:
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute("INSERT INTO meta VALUES ('cluster', ?)", (cluster,))
            self.commit({})

    def close(self) -> None:
        with self.lock:
            self.db.execute("ROLLBACK")  # what no commit() made durable is read again next time
            self.db.close()
            if self._held >= 0:
                os.close(self._held)  # releases the file to the next process
                self._held = -1

    @classmethod
    def claimed(cls, folder: Path | None, name: str, schema: str, tables: tuple[str, ...]) -> Snapshot:
        """A snapshot of this process's own under `folder` (`claim`); in memory with no folder, or
        when every slot is held."""
        got = claim(folder, name) if folder is not None else None
        return cls(*(got[0], schema, tables, got[1]) if got else (":memory:", schema, tables))


def resume_from(
    client: Consumer, snapshot: Snapshot, partitions: list[Partition], timeout: float
) -> dict[Partition, int]:
    """The offset to read each of `partitions` from: where `snapshot` left off if it describes this
    log; else (it is emptied) where each partition starts now. A partition the snapshot has not
    read starts at its log start offset too (retention may have moved it past 0)."""
    stored, cluster = snapshot.positions(), client.list_topics(timeout=timeout).cluster_id or ""
    bounds = {tp: watermarks(client, tp, timeout) for tp in {*partitions, *stored}}
    why = _foreign(snapshot, stored, cluster, bounds)
    if why is not None:
        if why:
            log.warning("the snapshot %s is not of this log (%s): reading the log again", snapshot.path, why)
        snapshot.forget(cluster)
        stored = {}
    return {tp: stored.get(tp, bounds[tp][0]) for tp in partitions}


def watermarks(client: Consumer, tp: Partition, timeout: float) -> tuple[int, int]:
    """A partition's low and high watermarks as the broker answers now. A topic created a moment ago
    may have no leader yet (NOT_LEADER_FOR_PARTITION, seen starting the Luoshan demo under load):
    asked again until `timeout`, then the error is raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = client.get_watermark_offsets(TopicPartition(*tp), timeout=timeout, cached=False)
        except KafkaException as e:
            error = e.args[0]
            if not (error.retriable() or error.code() in NO_LEADER_YET) or time.monotonic() > deadline:
                raise
            found = None
        if found is not None:
            return int(found[0]), int(found[1])
        if time.monotonic() > deadline:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"no watermarks of {tp} in {timeout} s"))
        time.sleep(RETRY_S)


def _foreign(
    snapshot: Snapshot, stored: dict[Partition, int], cluster: str, bounds: dict[Partition, tuple[int, int]]
) -> str | None:
    """Why the snapshot cannot be resumed on this log ("": it is new), or None if it can."""
    known = snapshot.meta("cluster")
    if known is None:
        return "" if not stored else "it names no cluster"
    if known != cluster:
        return f"it was read from cluster {known}, this is {cluster}"
    for tp, offset in stored.items():
        low, high = bounds[tp]
        if not low <= offset <= high:
            return f"it stops at offset {offset} of {tp}, which now holds {low}..{high}"
    return None


def claim(folder: Path, name: str) -> tuple[Path, int] | None:
    """The first file `folder/name.K.sqlite3` no other process holds, and the descriptor whose lock
    keeps them off it (released with the process, or `os.close`); None if every slot is held.
    Each process writes a snapshot of its own: SQLite lets only one writer in at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    for slot in range(SLOTS):
        fd = os.open(folder / f"{name}.{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return folder / f"{name}.{slot}.sqlite3", fd
    return None
