"""`accord backbone up | down | status`: the whole backbone on one machine, in one command.

Starts a local Kafka (secured) unless `KAFKA_BOOTSTRAP_SERVERS` names a cluster, creates
every topic the policy implies, gives every agency and service its own SCRAM principal
(password files 0600 under `credentials/`) and applies the policy's ACLs, makes the
development keystore and pseudonym key if missing, then runs the ledger, one copy sink per
enforcing agency (SQLite files, as that agency) and the reconciler, each as its own
principal, as child processes whose pids it records, so `down` stops exactly what `up`
started. This composes services; it is not one of them.
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

from services.acl.apply import apply as apply_acls
from services.acl.plan import SERVICES, agencies, plan, principal_name
from services.acl.principals import ensure_credentials, environment_of
from services.core.connection import SECURITY_VARIABLES, KafkaConnection
from services.core.files import create_secret, private_folder
from services.core.kafka import create_topics
from services.core.policy import load_policy
from services.core.settings import KafkaSettings, KeystoreSettings, state_root
from services.localkafka import processes
from services.localkafka.broker import LocalKafka
from services.localkafka.cli import state_dir as kafka_state_dir


def state_dir() -> Path:
    return state_root() / "backbone"


def credentials_dir() -> Path:
    return state_dir() / "credentials"


def _admin(nodes: int, folder: Path) -> KafkaConnection:
    """The super user's connection: the environment's cluster, else a local one started now."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return KafkaSettings().connection
    click.echo("no KAFKA_BOOTSTRAP_SERVERS: starting a local Kafka", err=True)
    (folder / "started-kafka").touch()
    broker = LocalKafka(kafka_state_dir(), nodes=nodes, base_port=9092, secure=not _plaintext())
    broker.start()
    connection = broker.connection()
    assert connection is not None, "a started broker records its bootstrap"
    return connection


def _plaintext() -> bool:
    return os.environ.get("ACCORD_KAFKA_PLAINTEXT", "").lower() in ("1", "true", "yes")


def provision(admin: KafkaConnection, settings: KafkaSettings, folder: Path) -> dict[str, str]:
    """Topics, a principal per agency and service, and the policy's ACLs; returns each
    principal's name by the role it plays (agency id or service name)."""
    policy = load_policy()
    specs = settings.topics.specs(policy.issuers, policy.enforcers)
    create_topics(admin, specs, settings.partitions, settings.replication_factor)
    click.echo(f"{len(specs)} topics ready", err=True)
    roles = {role: principal_name(settings.namespace, role) for role in [*agencies(policy), *SERVICES]}
    if not admin.uses_sasl:
        click.echo(f"{admin.protocol}: no principals, no ACLs (every service connects as given)", err=True)
        return roles
    ensure_credentials(admin, roles.values(), folder)
    for user in roles.values():
        env = environment_of(admin, user, folder)
        (folder / f"{user}.env").write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
    changes = apply_acls(admin, plan(policy, settings.topics), settings.namespace)
    click.echo(
        f"{len(roles)} principals; {len(changes.added)} ACLs added, {len(changes.removed)} removed", err=True
    )
    return roles


def _environment(folder: Path) -> dict[str, str]:
    """What every child service needs: the trust anchor, the backbone's key, a pseudonym key (Kafka: `_as`).

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
    return env


def _as(env: dict[str, str], admin: KafkaConnection, user: str | None) -> dict[str, str]:
    """`env` with the Kafka connection of `user` (the admin's address, the user's credentials)."""
    base = {k: v for k, v in env.items() if k not in SECURITY_VARIABLES}
    if user is None:
        return {**base, **admin.environment()}
    return {**base, **environment_of(admin, user, credentials_dir())}


def _principal_of(service: str, roles: dict[str, str]) -> str | None:
    """ledger / reconciler run as themselves; `copy-X` runs as agency X."""
    return roles.get(service.removeprefix("copy-")) if roles else None


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
    admin = _admin(int(nodes), folder)
    settings = KafkaSettings.of(admin)
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):  # a local cluster of `nodes`
        settings = KafkaSettings.of(admin, replication_factor=min(settings.replication_factor, int(nodes)))
    roles = provision(admin, settings, credentials_dir())
    if not topics_only:
        policy = load_policy()
        env = _environment(folder)
        KeystoreSettings().create_local([a.id for a in policy.agencies])
        running = {name: pid for name, pid in _recorded().items() if _ours(pid)}
        for name, command in _service_commands(folder, policy.enforcers).items():
            if name not in running:
                user = _principal_of(name, roles) if admin.uses_sasl else None
                running[name] = _start(name, command, _as(env, admin, user), folder)
        _pids_file().write_text("".join(f"{name} {pid}\n" for name, pid in running.items()))
        click.echo(f"{len(running)} services running; logs in {folder / 'logs'}", err=True)
    if admin.uses_sasl:
        click.echo(f"credentials: {credentials_dir()}/<principal>.env", err=True)
    click.echo(admin.bootstrap)


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
