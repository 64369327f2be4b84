"""The supervisor restarts what exits, with backoff, gives up on what keeps failing, and stops
everything on request; real child processes, told apart by pid, no broker needed."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.backbone.supervisor import FAILED, Recorded, Restarts, Supervisor, read_state
from services.localkafka import processes

QUICK = Restarts(backoff_s=0.05, backoff_cap_s=0.2, stable_s=60, give_up_after=3)


def test_the_backoff_doubles_per_quick_failure_up_to_its_cap() -> None:
    restarts = Restarts(backoff_s=1, backoff_cap_s=60)
    assert [restarts.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def python(tmp_path: Path, code: str) -> list[str]:
    """A child whose command line names `tmp_path`, the marker that makes its pid ours."""
    return [sys.executable, "-c", code, str(tmp_path)]


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Callable[[dict[str, list[str]]], Path]]:
    stop, threads = threading.Event(), []

    def start(commands: dict[str, list[str]]) -> Path:
        (tmp_path / "logs").mkdir()
        plan = {name: (command, dict(os.environ)) for name, command in commands.items()}
        supervisor = Supervisor(plan, tmp_path / "supervisor.json", tmp_path / "logs", QUICK)
        threads.append(threading.Thread(target=supervisor.run, args=(stop,)))
        threads[0].start()
        return tmp_path / "supervisor.json"

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=60)


def until(path: Path, marker: Path, holds: Callable[[Recorded], bool]) -> Recorded:
    deadline = time.monotonic() + 30
    while True:
        if path.exists() and holds(recorded := read_state(path, str(marker))):
            return recorded
        assert time.monotonic() < deadline, path.read_text() if path.exists() else "no state file"
        time.sleep(0.05)


def test_a_killed_service_is_restarted_and_the_state_says_so(
    supervised: Callable[[dict[str, list[str]]], Path], tmp_path: Path
) -> None:
    state = supervised({"sleeper": python(tmp_path, "import time; time.sleep(600)")})
    first = until(state, tmp_path, lambda r: r.services["sleeper"]["running"]).services["sleeper"]
    assert first["restarts"] == 0 and first["last_exit"] is None and first["up_since"]

    os.kill(first["pid"], signal.SIGKILL)

    def restarted(r: Recorded) -> bool:
        return bool(r.services["sleeper"]["running"] and r.services["sleeper"]["restarts"] == 1)

    again = until(state, tmp_path, restarted).services["sleeper"]
    assert again["last_exit"] == -9 and again["pid"] != first["pid"] and again["state"] == "running"


def test_a_service_that_keeps_failing_is_marked_failed_not_restarted_forever(
    supervised: Callable[[dict[str, list[str]]], Path], tmp_path: Path
) -> None:
    state = supervised({"broken": python(tmp_path, "import sys; sys.exit(3)"),
                        "fine": python(tmp_path, "import time; time.sleep(600)")})  # fmt: skip
    recorded = until(state, tmp_path, lambda r: r.services["broken"]["state"] == FAILED)
    broken: dict[str, Any] = recorded.services["broken"]
    assert (broken["restarts"], broken["failures"], broken["last_exit"], broken["pid"]) == (2, 3, 3, None)
    assert recorded.services["fine"]["running"]  # one failing service does not disturb the others
    time.sleep(QUICK.backoff_cap_s * 3)
    assert read_state(state, str(tmp_path)).services["broken"]["restarts"] == 2  # left alone


def test_stopping_the_supervisor_stops_every_child(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    plan = {f"s{i}": (python(tmp_path, "import time; time.sleep(600)"), dict(os.environ)) for i in range(3)}
    stop = threading.Event()
    supervisor = Supervisor(plan, tmp_path / "supervisor.json", tmp_path / "logs", QUICK)
    thread = threading.Thread(target=supervisor.run, args=(stop,))
    thread.start()
    pids = until(tmp_path / "supervisor.json", tmp_path, lambda r: len(r.pids()) == 3).pids()

    stop.set()
    thread.join(timeout=60)

    assert not any(processes.exists(pid) for pid in pids)
    services = read_state(tmp_path / "supervisor.json", str(tmp_path)).services
    assert {s["state"] for s in services.values()} == {"stopped"}
    assert {s["last_exit"] for s in services.values()} == {-signal.SIGTERM}
