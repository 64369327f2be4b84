"""`accord backbone up | down | status`: the whole backbone on one machine, in one command.

`up` provisions (services/backbone/provision.py: a local Kafka unless `KAFKA_BOOTSTRAP_SERVERS`
names a cluster, topics with the replication factor asked for, principals, ACLs, keys), then starts
one detached supervisor (services/backbone/supervisor.py) that runs the ledger, one copy sink per
enforcing agency and the reconciler, each as its own principal, and restarts whichever exits.
`down` stops the supervisor, which stops every service, all by recorded pid. `status` shows each
service's pid, restarts, last exit code and since when it is up, and the cluster's under-replicated
partitions. This composes services; it is not one of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from services.backbone import ops
from services.backbone.cluster import replication
from services.backbone.provision import (
    credentials_dir,
    existing_admin,
    provision,
    service_plan,
    start_admin,
    state_dir,
)
from services.backbone.supervisor import STOP_TIMEOUT_S, Recorded, Restarts, Supervisor, read_state
from services.core.connection import KafkaConnection
from services.core.errors import AccordError
from services.core.files import private_folder
from services.core.policy import load_policy
from services.core.settings import KafkaSettings
from services.localkafka import processes
from services.localkafka.broker import LocalKafka
from services.localkafka.cli import EXIT_NOT_RUNNING
from services.localkafka.cli import state_dir as kafka_state_dir

READY_TIMEOUT_S = 30.0


def state_file() -> Path:
    return state_dir() / "supervisor.json"


def _recorded() -> Recorded:
    """The state file, each pid checked: ours only if its command line names the state folder
    (every service's does), so a pid recycled since is never taken for, or signalled as, ours."""
    try:
        return read_state(state_file(), str(state_dir()))
    except AccordError as e:
        raise click.ClickException(str(e)) from e


@click.group()
def backbone() -> None:
    """Run the whole backbone locally: Kafka, topics, ledger, copies, reconciler, supervised."""


@backbone.command()
@click.option("--nodes", type=click.Choice(["1", "3"]), default="1", help="local brokers to start")
@click.option("--topics-only", is_flag=True, help="create the topics and stop there")
def up(nodes: str, topics_only: bool) -> None:
    """Start the backbone (and a local broker if none is given); print the bootstrap address.

    Topics get ACCORD_REPLICATION_FACTOR replicas (default 1), or `up` refuses and says why."""
    folder = state_dir()
    for sub in ("logs", "copies", "ledger"):
        private_folder(folder / sub)  # copies hold personal data: 0700 from the start
    try:
        admin = start_admin(int(nodes), folder)
        roles = provision(admin, KafkaSettings.of(admin), credentials_dir())
        if not topics_only:
            _supervise_once(folder, admin, roles)
    except AccordError as e:
        raise click.ClickException(str(e)) from e
    if admin.uses_sasl:
        click.echo(f"credentials: {credentials_dir()}/<principal>.env", err=True)
    click.echo(admin.bootstrap)


def _supervise_once(folder: Path, admin: KafkaConnection, roles: dict[str, str]) -> None:
    """Supervise the services unless a supervisor runs already: a second `up` changes nothing (a
    plan made anyway would record new ops ports that no running service listens on)."""
    recorded = _recorded()
    if recorded.supervisor_running:
        click.echo(f"already supervised (pid {recorded.supervisor_pid}); `down` first to restart", err=True)
        return
    _supervise(service_plan(folder, admin, roles), folder)


def _supervise(plan: dict[str, tuple[list[str], dict[str, str]]], folder: Path) -> None:
    """Start the supervisor, detached, and hand it the plan on its stdin (environments hold keys:
    they go through a pipe, never a file); return once it has started every service."""
    state_file().unlink(missing_ok=True)
    command = [sys.executable, "-m", "services", "backbone", "supervise", "--state-dir", str(folder)]
    with (folder / "logs" / "supervisor.log").open("ab") as log:
        supervisor = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)  # fmt: skip
    assert supervisor.stdin is not None
    with supervisor.stdin:
        supervisor.stdin.write(json.dumps(plan).encode())
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(_recorded().pids()) < len(plan) or _recorded().supervisor_pid != supervisor.pid:
        if supervisor.poll() is not None or time.monotonic() > deadline:
            supervisor.terminate()  # it stops whatever it started
            supervisor.wait()
            raise click.ClickException(f"the supervisor did not start the services: see {log.name}")
        time.sleep(0.2)
    click.echo(f"{len(plan)} services supervised (pid {supervisor.pid}); logs in {folder / 'logs'}", err=True)


@backbone.command(hidden=True)
@click.option("--state-dir", "folder", type=click.Path(path_type=Path), required=True)
def supervise(folder: Path) -> None:
    """Run the plan read from stdin until SIGTERM (started by `up`; `--state-dir` marks it as ours)."""
    plan = {name: (command, env) for name, (command, env) in json.loads(sys.stdin.read()).items()}
    stop = threading.Event()

    def stopping(signum: int, _: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    Supervisor(plan, folder / "supervisor.json", folder / "logs", Restarts(), log=sys.stderr).run(stop)


@backbone.command()
def down() -> None:
    """Stop the supervisor (it stops every service), then the local broker if `up` started one."""
    recorded = _recorded()
    if recorded.supervisor_running and recorded.supervisor_pid is not None:
        os.kill(recorded.supervisor_pid, signal.SIGTERM)
        _wait_gone([recorded.supervisor_pid], STOP_TIMEOUT_S + 10)
    leftovers = [pid for pid in _recorded().pids() if processes.runs(pid, str(state_dir()))]
    for pid in leftovers:  # a supervisor killed -9 leaves its services running: stop them by pid
        _signal_group(pid, signal.SIGTERM)
    for pid in _wait_gone(leftovers, STOP_TIMEOUT_S):
        _signal_group(pid, signal.SIGKILL)
    if (state_dir() / "started-kafka").exists():
        LocalKafka(kafka_state_dir()).stop()
        (state_dir() / "started-kafka").unlink()
    click.echo(f"stopped {len(recorded.services)} services", err=True)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until every pid has exited; return those still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while any(processes.exists(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [pid for pid in pids if processes.exists(pid)]


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


@backbone.command()
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def status(as_json: bool) -> None:
    """Each service (pid, state, restarts, last exit code, up since, and what its /health says)
    and the cluster's under-replicated partitions; exit 3 unless the supervisor and every service
    run. Health is shown, not judged here: a service's own /health is the probe to alert on."""
    recorded = _recorded()
    addresses = ops.recorded(state_dir())
    shown = {
        name: {**s, "health": ops.health_of(addresses[name]) if s["running"] and name in addresses else None}
        for name, s in recorded.services.items()
    }
    report = {
        "supervisor": {"pid": recorded.supervisor_pid, "running": recorded.supervisor_running},
        "services": shown,
        "cluster": _cluster(),
    }
    click.echo(json.dumps(report, indent=1) if as_json else _text(report))
    services = recorded.services.values()
    if not recorded.supervisor_running or not all(s["running"] for s in services):
        sys.exit(EXIT_NOT_RUNNING)


def _cluster() -> dict[str, Any] | None:
    """Replication of the backbone's topics, on the cluster `up` used (None: no cluster known)."""
    admin = existing_admin()
    if admin is None:
        return None
    policy, settings = load_policy(), KafkaSettings()
    names = [spec.name for spec in settings.topics.specs(policy.issuers, policy.enforcers)]
    return replication(admin, names)


def _text(report: dict[str, Any]) -> str:
    supervisor = report["supervisor"]
    lines = [f"{'supervisor':24} pid {supervisor['pid'] or '-':>7}  "
             f"{'running' if supervisor['running'] else 'STOPPED'}"]  # fmt: skip
    for name, s in sorted(report["services"].items()):
        since = f"up since {s['up_since']}" if s["running"] else ""
        since = f"retry at {s['retry_at']}" if s["retry_at"] else since
        lines.append(f"{name:24} pid {s['pid'] or '-':>7}  {s['state']:8} restarts {s['restarts']:>3}  "
                     f"last exit {s['last_exit']}  {since}{_health_text(s.get('health'))}")  # fmt: skip
    return "\n".join([*lines, _cluster_text(report["cluster"])])


def _health_text(health: dict[str, Any] | None) -> str:
    if health is None:
        return ""
    if health["healthy"]:
        return "  healthy"
    return "  UNHEALTHY: " + "; ".join(str(r) for r in health.get("reasons", []))


def _cluster_text(cluster: dict[str, Any] | None) -> str:
    if cluster is None:
        return "cluster: none recorded (no KAFKA_BOOTSTRAP_SERVERS, no local broker)"
    if not cluster["reachable"]:
        return f"cluster: UNREACHABLE ({cluster['error']})"
    short = cluster["under_replicated"]
    lines = [
        f"cluster: {len(cluster['brokers'])} broker(s) alive; {len(short)} under-replicated partition(s)"
    ]
    lines += [
        f"  {p['topic']}[{p['partition']}] replicas {p['replicas']} in sync {p['in_sync']}" for p in short
    ]
    return "\n".join(lines)
