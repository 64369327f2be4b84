"""Processes we started, recognised by pid and command line: never by name, never a recycled pid."""

from __future__ import annotations

from pathlib import Path


def runs(pid: int, marker: str) -> bool:
    """Whether `pid` is still ours: its command line holds `marker` (a directory only our processes
    name), so a recycled pid is never mistaken for, or signalled as, one we started."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline and exists(pid)


def exists(pid: int) -> bool:
    """True until the process is gone or a zombie (it holds no memory nor ports then).

    Checked without the command-line marker, which a dying process loses early.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")
