"""What `accord backbone up` sets up before any service runs, and what each service is started with.

A local Kafka (secured) unless `KAFKA_BOOTSTRAP_SERVERS` names a cluster; every topic the policy
implies, with the replication factor asked for (`ACCORD_REPLICATION_FACTOR`) or a refusal; a SCRAM
principal per agency and service (password files 0600 under `credentials/`) and the policy's ACLs;
then the plan: each service's command line and environment, as its own principal.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import click

from services.acl.apply import apply as apply_acls
from services.acl.plan import SERVICES, agencies, plan, principal_name
from services.acl.principals import ensure_credentials, environment_of
from services.backbone import ops
from services.core.connection import SECURITY_VARIABLES, KafkaConnection
from services.core.files import create_secret
from services.core.kafka import create_topics
from services.core.policy import load_policy
from services.core.settings import KafkaSettings, KeystoreSettings, state_root
from services.localkafka.broker import LocalKafka
from services.localkafka.cli import state_dir as kafka_state_dir

# name -> (command line, environment)
Plan = dict[str, tuple[list[str], dict[str, str]]]


def state_dir() -> Path:
    return state_root() / "backbone"


def credentials_dir() -> Path:
    return state_dir() / "credentials"


def start_admin(nodes: int, folder: Path) -> KafkaConnection:
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


def existing_admin() -> KafkaConnection | None:
    """The super user's connection to the cluster `up` used, without starting anything."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return KafkaSettings().connection
    return LocalKafka(kafka_state_dir(), secure=not _plaintext()).connection()


def _plaintext() -> bool:
    return os.environ.get("ACCORD_KAFKA_PLAINTEXT", "").lower() in ("1", "true", "yes")


def provision(admin: KafkaConnection, settings: KafkaSettings, folder: Path) -> dict[str, str]:
    """Topics, a principal per agency and service, and the policy's ACLs; returns each
    principal's name by the role it plays (agency id or service name)."""
    policy = load_policy()
    specs = settings.topics.specs(policy.issuers, policy.enforcers)
    create_topics(admin, specs, settings.partitions, settings.replication_factor)
    click.echo(f"{len(specs)} topics ready (replication factor {settings.replication_factor})", err=True)
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


def service_plan(folder: Path, admin: KafkaConnection, roles: dict[str, str]) -> Plan:
    """Every service's command and environment: the ledger and the reconciler as themselves,
    each copy sink as its agency (SQLite files under `copies/`), each with its own ops port."""
    policy = load_policy()
    KeystoreSettings().create_local([a.id for a in policy.agencies])
    env = _environment(folder)
    commands = _service_commands(folder, policy.enforcers)
    addresses = ops.assign(folder, commands)
    return {
        name: (
            [*command, "--ops", addresses[name]],
            _as(env, admin, _principal_of(name, roles) if admin.uses_sasl else None),
        )
        for name, command in commands.items()
    }


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
