"""`accord backbone down` and `status` trust only pids that still run one of ours: after a supervisor
killed -9 its services are stopped by their recorded pids; a recycled pid is never signalled; a state
file edited into nonsense is refused in one clear line. Real processes, no broker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.backbone.cli import backbone
from services.backbone.supervisor import RUNNING, Service, write_state
from services.localkafka import processes


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        child.kill()
        child.wait()


def sleeper(children: list[subprocess.Popen[bytes]], *marker: str) -> subprocess.Popen[bytes]:
    """A process in its own session, as the supervisor starts them; `marker` on its command line."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", *marker],
                             start_new_session=True)  # fmt: skip
    children.append(child)
    return child


def until_exec(pid: int, marker: str) -> None:
    """Popen may return a moment before the kernel shows the new command line (vfork returns at exec's
    start, and /proc/<pid>/cmdline is empty until the program's arguments are in place)."""
    deadline = time.monotonic() + 10
    while not processes.runs(pid, marker):
        assert time.monotonic() < deadline, Path(f"/proc/{pid}/cmdline").read_bytes()
        time.sleep(0.01)


def run(state: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(backbone, list(args), env={"ACCORD_STATE_DIR": str(state),
                                                           "KAFKA_BOOTSTRAP_SERVERS": ""})  # fmt: skip
    return result.exit_code, result.output


def test_down_after_a_killed_supervisor_stops_its_services_and_spares_a_recycled_pid(
    tmp_path: Path, children: list[subprocess.Popen[bytes]]
) -> None:
    folder = tmp_path / "backbone"
    folder.mkdir()
    ours, stranger = sleeper(children, str(folder / "ledger")), sleeper(children)  # no marker: not ours
    dead = sleeper(children, str(folder))
    dead.kill()
    dead.wait()  # the supervisor, killed -9: its pid recorded, nothing runs it
    services = [Service("ledger", RUNNING, ours.pid), Service("copy-x", RUNNING, stranger.pid)]
    write_state(folder / "supervisor.json", dead.pid, services)

    until_exec(ours.pid, str(folder))
    assert not processes.runs(stranger.pid, str(folder))

    code, shown = run(tmp_path, "status", "--json")
    report = json.loads(shown)
    assert code == 3 and not report["supervisor"]["running"], shown
    assert report["services"]["ledger"]["running"], shown
    assert report["services"]["copy-x"]["state"] == "EXITED", shown

    code, said = run(tmp_path, "down")
    assert code == 0, said
    assert ours.wait(timeout=30) == -15  # stopped by its recorded pid, with SIGTERM
    assert processes.exists(stranger.pid)  # a pid that no longer runs one of ours is left alone


def test_a_state_file_edited_into_nonsense_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "backbone"
    folder.mkdir()
    (folder / "supervisor.json").write_text(
        json.dumps({"supervisor": {"pid": "1; rm -rf /"}, "services": {}})
    )
    for command in ("status", "down"):
        code, said = run(tmp_path, command)
        assert code == 1 and "is not a supervisor's state" in said and "Traceback" not in said
