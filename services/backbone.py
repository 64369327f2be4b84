"""`accord backbone up | down | status`: the whole backbone on one machine, in one command.

Starts a local Kafka unless `KAFKA_BOOTSTRAP_SERVERS` names a cluster, creates
every topic the policy implies, makes the development keystore and pseudonym key
if missing, then runs the ledger, one copy sink per enforcing agency (SQLite
files) and the reconciler as child processes whose pids it records, so `down`
stops exactly what `up` started. This composes services; it is not one of them.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from services.core import processes
from services.core.files import create_secret, private_folder
from services.core.kafka import create_topics
from services.core.local_kafka import LocalKafka
from services.core.local_kafka_cli import state_dir as kafka_state_dir
from services.core.policy import load_policy
from services.core.settings import KafkaSettings, KeystoreSettings, state_root


def state_dir() -> Path:
    return state_root() / "backbone"


def _bootstrap(nodes: int, folder: Path) -> str:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        return given
    click.echo("no KAFKA_BOOTSTRAP_SERVERS: starting a local Kafka", err=True)
    (folder / "started-kafka").touch()
    return LocalKafka(kafka_state_dir(), nodes=nodes, base_port=9092).start()


def _environment(bootstrap: str, folder: Path) -> dict[str, str]:
    """What every child service needs: the broker, the trust anchor, the backbone's key, a pseudonym key.

    No agency's private key: the backbone's services verify, they never sign for an agency.
    """
    key_file = folder / "pseudonym.key"
    if not os.environ.get("ACCORD_PSEUDONYM_KEY") and not key_file.exists():
        create_secret(key_file, secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if k not in ("ACCORD_KEYSTORE", "ACCORD_SIGNING_KEY_FILE")}
    env.setdefault("ACCORD_PSEUDONYM_KEY", key_file.read_text().strip() if key_file.exists() else "")
    keys = KeystoreSettings()
    env.setdefault("ACCORD_TRUST_ANCHOR", str(keys.trust_anchor))
    env.setdefault("ACCORD_BACKBONE_KEY_FILE", str(keys.backbone_key_file))
    env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return env


def _service_commands(folder: Path, enforcers: list[str]) -> dict[str, list[str]]:
    accord = [sys.executable, "-m", "services"]
    stores = {a: f"sqlite:///{folder / 'copies' / f'{a}.db'}" for a in enforcers}
    commands = {"ledger": [*accord, "ledger", "run", "--data-dir", str(folder / "ledger")]}
    for agency, url in stores.items():
        commands[f"copy-{agency}"] = [*accord, "copy", "run", "--agency", agency, "--store", url]
    copies = [arg for agency, url in stores.items() for arg in ("--copy", f"{agency}={url}")]
    commands["reconciler"] = [*accord, "reconcile", "run", *copies]
    return commands


def _start(name: str, command: list[str], env: dict[str, str], folder: Path) -> int:
    log = (folder / "logs" / f"{name}.log").open("ab")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process.pid


def _pids_file() -> Path:
    return state_dir() / "pids"


def _recorded() -> dict[str, int]:
    if not _pids_file().exists():
        return {}
    pairs = (line.split() for line in _pids_file().read_text().splitlines() if line.strip())
    return {name: int(pid) for name, pid in pairs}


def _ours(pid: int) -> bool:
    """A recorded pid that still runs one of our services: their command lines name the state folder."""
    return processes.runs(pid, str(state_dir()))


@click.group()
def backbone() -> None:
    """Run the whole backbone locally: Kafka, topics, ledger, copies, reconciler."""


@backbone.command()
@click.option("--nodes", type=click.Choice(["1", "3"]), default="1", help="local brokers to start")
@click.option("--topics-only", is_flag=True, help="create the topics and stop there")
def up(nodes: str, topics_only: bool) -> None:
    """Start the backbone (and a local broker if none is given); print the bootstrap address."""
    folder = state_dir()
    for sub in ("logs", "copies", "ledger"):
        private_folder(folder / sub)  # copies hold personal data: 0700 from the start
    bootstrap = _bootstrap(int(nodes), folder)
    settings = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=bootstrap)  # type: ignore[call-arg]
    policy = load_policy()
    specs = settings.topics.specs(policy.issuers, policy.enforcers)
    create_topics(bootstrap, specs, settings.partitions, min(settings.replication_factor, int(nodes)))
    click.echo(f"{len(specs)} topics ready", err=True)
    if not topics_only:
        env = _environment(bootstrap, folder)
        KeystoreSettings().create_local([a.id for a in policy.agencies])
        running = {name: pid for name, pid in _recorded().items() if _ours(pid)}
        for name, command in _service_commands(folder, policy.enforcers).items():
            if name not in running:
                running[name] = _start(name, command, env, folder)
        _pids_file().write_text("".join(f"{name} {pid}\n" for name, pid in running.items()))
        click.echo(f"{len(running)} services running; logs in {folder / 'logs'}", err=True)
    click.echo(bootstrap)


@backbone.command()
def down() -> None:
    """Stop the services `up` started (by pid), then the local broker if `up` started one."""
    recorded = _recorded()
    ours = [pid for pid in recorded.values() if _ours(pid)]  # never a pid recycled since `up`
    for pid in ours:
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while any(processes.exists(pid) for pid in ours) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in ours:
        if processes.exists(pid):
            os.killpg(pid, signal.SIGKILL)
    _pids_file().unlink(missing_ok=True)
    if (state_dir() / "started-kafka").exists():
        LocalKafka(kafka_state_dir()).stop()
        (state_dir() / "started-kafka").unlink()
    click.echo(f"stopped {len(recorded)} services", err=True)


@backbone.command()
def status() -> None:
    """Which recorded services are alive."""
    for name, pid in sorted(_recorded().items()):
        click.echo(f"{name:32} pid {pid:>7}  {'running' if _ours(pid) else 'STOPPED'}")
