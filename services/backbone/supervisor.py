"""The backbone's supervisor: one detached process that runs the services and restarts those that exit.

The services are meant to run until stopped, and the ledger exits 70 on a failed handler precisely so
that something restarts it; so every exit the supervisor did not ask for is a failure. It restarts with
exponential backoff (`backoff_s`, doubled per quick failure, capped at `backoff_cap_s`); a service up
longer than `stable_s` starts the count afresh, and one that failed `give_up_after` times in a row is
marked `failed` and left alone rather than restarted in a hot loop (`up` again once fixed).

Everything it knows is in one state file (`supervisor.json`), rewritten atomically on every change:
its own pid, and each service's pid, state, restarts, last exit code (negative: the signal that killed
it, -9 for `kill -9`) and since when it is up; `accord backbone status` reads only that file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from pydantic_settings import BaseSettings, SettingsConfigDict

from services.backbone.provision import Plan
from services.core.errors import ConfigurationError
from services.core.files import SECRET_FILE, replace_file
from services.localkafka import processes

RUNNING, BACKOFF, FAILED, STOPPED = "running", "backoff", "failed", "stopped"
STOP_TIMEOUT_S = 20.0
TICK_S = 0.2


class Restarts(BaseSettings):
    """How the supervisor restarts (`ACCORD_SUPERVISOR_*`)."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_SUPERVISOR_", frozen=True, extra="ignore")

    backoff_s: float = 1.0
    backoff_cap_s: float = 60.0
    stable_s: float = 60.0
    give_up_after: int = 5

    def delay(self, failures: int) -> float:
        """Seconds before restart number `failures` of a quick-failing series: 1, 2, 4, … capped."""
        return float(min(self.backoff_cap_s, self.backoff_s * 2 ** max(0, failures - 1)))


@dataclass
class Service:
    """One supervised service: what `status` shows, and (not saved) how to start it."""

    name: str
    state: str = STOPPED
    pid: int | None = None
    restarts: int = 0
    failures: int = 0  # exits in a row, each after less than `stable_s` up
    last_exit: int | None = None
    up_since: str | None = None
    retry_at: str | None = None

    def shown(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Child:
    service: Service
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    retry: float = 0.0


@dataclass
class Supervisor:
    """Runs `plan` until `stop` is set, logging each exit and restart to `log`."""

    plan: Plan
    state_file: Path
    logs: Path
    restarts: Restarts = field(default_factory=Restarts)
    log: TextIO | None = None
    children: list[Child] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        self.children = [Child(Service(name), cmd, env) for name, (cmd, env) in self.plan.items()]
        for child in self.children:
            self._start(child)
        self._save()
        while not stop.wait(TICK_S):
            if any([self._tend(child, time.monotonic()) for child in self.children]):
                self._save()
        self._stop_all()
        self._save()

    def _tend(self, child: Child, now: float) -> bool:
        """Notice an exit, or restart when the backoff is over; True when something changed."""
        if child.process is not None and child.process.poll() is not None:
            self._exited(child, child.process.returncode, now)
            return True
        if child.service.state == BACKOFF and now >= child.retry:
            child.service.restarts += 1
            self._start(child)
            return True
        return False

    def _exited(self, child: Child, code: int, now: float) -> None:
        service, lived = child.service, now - child.started
        child.process = None
        service.failures = 1 if lived >= self.restarts.stable_s else service.failures + 1
        service.pid, service.last_exit, service.up_since = None, code, None
        if service.failures >= self.restarts.give_up_after:
            service.state = FAILED
            self._say(f"{service.name} exited with {code} after {lived:.0f} s, {service.failures} times "
                      "in a row: failed, not restarted (see its log; `up` once fixed)")  # fmt: skip
            return
        delay = self.restarts.delay(service.failures)
        child.retry = now + delay
        service.state, service.retry_at = BACKOFF, _iso(datetime.now(UTC) + timedelta(seconds=delay))
        self._say(f"{service.name} exited with {code} after {lived:.0f} s; restarting in {delay:g} s")

    def _start(self, child: Child) -> None:
        with (self.logs / f"{child.service.name}.log").open("ab") as log:
            child.process = subprocess.Popen(
                child.command, env=child.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        child.started = time.monotonic()
        service = child.service
        service.state, service.pid, service.retry_at = RUNNING, child.process.pid, None
        service.up_since = _iso(datetime.now(UTC))

    def _stop_all(self) -> None:
        """SIGTERM every child's process group, SIGKILL what is left after `STOP_TIMEOUT_S`."""
        running = [c.process for c in self.children if c.process is not None]
        for process in running:
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            time.sleep(TICK_S)
        for process in running:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        for child in self.children:
            if child.process is not None:
                child.service.last_exit = child.process.returncode
            child.process, child.service.pid, child.service.state = None, None, STOPPED
            child.service.up_since = child.service.retry_at = None

    def _save(self) -> None:
        write_state(self.state_file, os.getpid(), [c.service for c in self.children])

    def _say(self, line: str) -> None:
        if self.log is not None:
            print(f"{_iso(datetime.now(UTC))} {line}", file=self.log, flush=True)


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def write_state(path: Path, pid: int, services: list[Service]) -> None:
    state = {"supervisor": {"pid": pid}, "services": {s.name: s.shown() for s in services}}
    replace_file(path, json.dumps(state, indent=1) + "\n", SECRET_FILE)


@dataclass(frozen=True)
class Recorded:
    """The state file as `status` and `down` read it, with what still runs checked by pid."""

    supervisor_pid: int | None
    supervisor_running: bool
    services: dict[str, dict[str, Any]]

    def pids(self) -> list[int]:
        return [s["pid"] for s in self.services.values() if s.get("pid")]


def read_state(path: Path, marker: str) -> Recorded:
    """What `path` records; a pid counts as running only if it still runs one of ours (`marker`)."""
    if not path.exists():
        return Recorded(None, False, {})
    try:
        state = json.loads(path.read_text())
        pid = int(state["supervisor"]["pid"])
        recorded = {name: Service(name, **{k: v for k, v in s.items() if k != "name"})
                    for name, s in state["services"].items()}  # fmt: skip
        pids = {name: None if s.pid is None else int(s.pid) for name, s in recorded.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigurationError(f"{path} is not a supervisor's state ({e!r}): no pid in it can be trusted; "
                                 "stop what runs by hand, remove the file, `up` again") from e  # fmt: skip
    services = {}
    for name, service in recorded.items():
        child = pids[name]
        alive = child is not None and processes.runs(child, marker)
        gone = service.state == RUNNING and not alive  # exited since; the supervisor is to notice
        services[name] = {**service.shown(), "state": "EXITED" if gone else service.state, "running": alive}
    return Recorded(pid, processes.runs(pid, marker), services)
