"""What the Luoshan demo does to the backbone: child services it starts and stops by pid, and the
backup and restore of an agency's SQLite copy.

The restore is a DBA's: the listing tables come back from the old backup while the
sink's own bookkeeping (its view-topic positions) stays as it was, so the sink does
not re-read the revocation by itself — exactly the copy nobody would ever correct
without reconciliation. Table names are those of services/core/copystore/sql.py.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from services.core.errors import AccordError

RESTORED_TABLES = ("copy_rows", "copy_buckets")
STOP_TIMEOUT_S = 20.0


class DrillError(AccordError):
    """A child service died or the story did not unfold in time; the message says where to look."""


class Children:
    """Child processes (`python -m services ...`), each logging to its own file, stopped by pid."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "services", *args], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def check(self) -> None:
        """Fail fast, with the log's tail, if a child exited on its own."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise DrillError(f"{name} exited with status {proc.returncode}:\n{tail}")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def backup(db: Path, to: Path) -> None:
    """An online, consistent copy of a live SQLite database (its backup API, not a file copy)."""
    with contextlib.closing(sqlite3.connect(db)) as source, contextlib.closing(sqlite3.connect(to)) as target:
        source.backup(target)


def restore_rows(db: Path, backup_file: Path) -> None:
    """Put the backup's rows (and their digest buckets) back, keeping the sink's positions."""
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("ATTACH DATABASE ? AS old", (str(backup_file),))
        conn.execute("BEGIN IMMEDIATE")
        for table in RESTORED_TABLES:
            conn.execute(f"DELETE FROM main.{table}")
            conn.execute(f"INSERT INTO main.{table} SELECT * FROM old.{table}")
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE old")
