"""A test session killed from outside leaves no PostgreSQL and no broker running (tests/support/reaper.py).

A child process starts both exactly as the session fixtures do (`_PostgresCluster`, `local_broker`),
prints their pids and waits; it is then SIGKILLed, so none of its `finally` runs, as when a CI job's
timeout kills pytest. The postmaster (daemonised by pg_ctl: no child of the killed process) and the
broker's JVM (in a session of its own) must be gone within seconds, and PostgreSQL's folder removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from services.localkafka import processes

ROOT = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 60.0  # the watcher's grace (20 s) before SIGKILL, with room for a loaded machine
CHILD = """
import json, sys, time
from pathlib import Path
from tests.conftest import _PostgresCluster, _postgres_bin_dir, local_broker

cluster = _PostgresCluster(_postgres_bin_dir())
cluster.start()
with local_broker(Path(sys.argv[1])) as broker:
    print(json.dumps({"postmaster": cluster.postmaster_pid, "data": str(cluster.data),
                      "root": str(cluster.root), "broker": broker.pids(),
                      "marker": f"{broker.state_dir}/node-"}), flush=True)
    time.sleep(600)
"""


def _until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _stop_leftovers(pids: dict[int, str], folder: str | None) -> None:
    """If the test fails, stop what it started itself, by pid and only while it runs our command line,
    and remove PostgreSQL's folder."""
    for pid, marker in pids.items():
        if processes.runs(pid, marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def test_killed_session_leaves_no_postgres_and_no_broker(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "kafka")], cwd=ROOT,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)  # fmt: skip
    started: dict[int, str] = {}
    folder = None
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, f"the child started nothing (exit {child.wait()})"
        held = json.loads(line)
        folder = held["root"]
        started = {held["postmaster"]: held["data"], **{pid: held["marker"] for pid in held["broker"]}}
        assert held["postmaster"] and held["broker"]
        assert all(processes.runs(pid, marker) for pid, marker in started.items()), "not up before the kill"

        child.kill()
        child.wait()

        assert _until(lambda: not any(processes.exists(pid) for pid in started), GONE_WITHIN_S), (
            f"still running {GONE_WITHIN_S:.0f} s after the session was killed: "
            f"{[pid for pid in started if processes.exists(pid)]}"
        )
        assert _until(lambda: not Path(held["root"]).exists(), GONE_WITHIN_S), "PostgreSQL's folder is left"
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
        _stop_leftovers(started, folder)
