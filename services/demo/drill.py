"""What the Luoshan demo does to the backbone: child services it starts and stops by pid, and the
backup and restore of an agency's copy, through the `CopyStore` port (any database it holds).

The restore is a DBA's (`CopyStore.restore`): the rows come back from the old backup while the
sink's own bookkeeping (its view-topic positions) stays as it was, so the sink does not re-read
the revocation by itself — exactly the copy nobody would ever correct without reconciliation.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path

from services.core.copystore import open_store
from services.core.errors import AccordError
from services.core.views import ViewRow

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


def backup(url: str, agency: str, to: Path) -> None:
    """The copy's rows as they are now, one JSON row per line (read in one query, so consistent)."""
    with contextlib.closing(open_store(url, agency)) as store:
        rows = list(store.rows())
    to.write_text("".join(f"{row.canonical()}\n" for row in rows))


def restore(url: str, agency: str, backup_file: Path) -> None:
    """Put the backup's rows back (their digest with them), keeping the sink's positions."""
    rows = [ViewRow.model_validate_json(line) for line in backup_file.read_text().splitlines() if line]
    with contextlib.closing(open_store(url, agency)) as store:
        store.restore(rows)
