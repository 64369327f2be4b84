"""A watcher that stops a server a test session started, should the session die without stopping it.

A pytest killed from outside (SIGKILL, a CI job's timeout) never runs its session fixtures'
`finally`, so the broker's JVMs and the PostgreSQL postmaster it started ran on. Neither dies
with its parent by itself: the JVMs run in sessions of their own (so a terminal's SIGINT does
not reach them) and `pg_ctl` daemonises the postmaster, which is then no child of ours at all
(so `PR_SET_PDEATHSIG` could not reach it; it would also fire on the death of the forking
*thread*, not the process). So `reaped` starts this module as a small process in a session of
its own, before the server: it polls the session's pid, and its start time (a recycled pid is
not the session), and once the session is gone reads the server's pids from the file the server
writes, stops each that still runs a command line naming `marker` (gently, then SIGKILL after
`GRACE_S`), and removes the folders it was given. Nothing is ever signalled by name.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from services.localkafka import processes

POLL_S = 0.2
GRACE_S = 20.0
ROOT = Path(__file__).resolve().parents[2]


def started(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, /proc/PID/stat field 22); None once it is gone
    or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


@contextlib.contextmanager
def reaped(pid_file: Path, marker: str, signum: signal.Signals, first_line: bool = False,
           remove: tuple[Path, ...] = ()) -> Iterator[int]:  # fmt: skip
    """While inside: if this process dies, the processes `pid_file` names (its first line only, with
    `first_line`) that run `marker` get `signum`, and `remove` is deleted. Yields the watcher's pid;
    on the way out the watcher is stopped (the caller has stopped the server itself)."""
    me = os.getpid()
    command = [sys.executable, "-m", "tests.support.reaper", "--parent", str(me), "--started",
               str(started(me)), "--pid-file", str(pid_file), "--marker", marker, "--signal", signum.name,
               *(["--first-line"] if first_line else []),
               *[f"--remove={path}" for path in remove]]  # fmt: skip
    watcher = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield watcher.pid
    finally:
        watcher.terminate()
        watcher.wait()


def watch(parent: int, since: int, pid_file: Path, marker: str, signum: int, first_line: bool) -> None:
    """Wait for `parent` to die, then stop what `pid_file` names."""
    while started(parent) == since:
        time.sleep(POLL_S)
    ours = [pid for pid in _pids(pid_file, first_line) if processes.runs(pid, marker)]
    _signal(ours, signum)
    deadline = time.monotonic() + GRACE_S
    while any(processes.exists(pid) for pid in ours) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    _signal([pid for pid in ours if processes.runs(pid, marker)], signal.SIGKILL)


def _pids(pid_file: Path, first_line: bool) -> list[int]:
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return []  # the server never got as far as writing it
    lines = lines[:1] if first_line else lines
    return [int(line) for line in lines if line.strip().isdigit()]


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--started", type=int, required=True, help="the parent's start time, in ticks")
    parser.add_argument("--pid-file", type=Path, required=True)
    parser.add_argument("--marker", required=True, help="what each one's command line holds")
    parser.add_argument("--signal", required=True, help="the gentle one, e.g. SIGTERM")
    parser.add_argument("--first-line", action="store_true", help="the pid file's first line is the only pid")
    parser.add_argument("--remove", type=Path, action="append", default=[])
    args = parser.parse_args()
    watch(args.parent, args.started, args.pid_file, args.marker, signal.Signals[args.signal], args.first_line)
    for path in args.remove:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
