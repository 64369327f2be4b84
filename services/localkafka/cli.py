"""`accord kafka up|down|status`: a local Kafka for development, no Docker needed.

`up` prints only the bootstrap address on stdout, so that a script can write
`export KAFKA_BOOTSTRAP_SERVERS=$(accord kafka up)`; everything else goes to
stderr, with the file to `source` for the super user's credentials (`client.env`:
bootstrap, SASL_SSL, CA file, password file). The cluster is secured unless
`--plaintext` (or `ACCORD_KAFKA_PLAINTEXT=1`) asks otherwise. A missing Java or
Maven is reported in one line with exit status 2, the usual status for "cannot run as invoked".
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from services.localkafka.broker import DEFAULT_PORT, HOST, LocalKafka, LocalKafkaError

EXIT_UNUSABLE = 2
# As LSB `status` does: 3 means "not running".
EXIT_NOT_RUNNING = 3


def state_dir() -> Path:
    """One cluster per user: `$ACCORD_STATE_DIR/kafka`, else under ~/.local/state."""
    configured = os.environ.get("ACCORD_STATE_DIR")
    base = Path(configured) if configured else Path.home() / ".local" / "state" / "accord"
    return base / "kafka"


def _fail(message: str, status: int) -> NoReturn:
    click.echo(f"accord kafka: {message}", err=True)
    sys.exit(status)


@click.group()
def kafka() -> None:
    """Run Apache Kafka (KRaft) from Maven Central jars on 127.0.0.1."""


@kafka.command()
@click.option(
    "--nodes",
    type=click.Choice(["1", "3"]),
    default="1",
    show_default=True,
    help="Brokers in the cluster (3 gives replication factor 3).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 45535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Client port of the first node; the others follow it, and each "
    "node's controller listens 10000 above, its inter-broker listener 20000 above.",
)
@click.option(
    "--plaintext",
    is_flag=True,
    envvar="ACCORD_KAFKA_PLAINTEXT",
    help="No TLS, no authentication, no authorizer (never the default).",
)
def up(nodes: str, port: int, plaintext: bool) -> None:
    """Start the cluster (or find it running) and print its bootstrap servers."""
    broker = LocalKafka(state_dir(), nodes=int(nodes), base_port=port, secure=not plaintext)
    alive = broker.alive_nodes()
    running = broker.bootstrap() if alive else None
    wanted = ",".join(f"{HOST}:{port + i}" for i in range(broker.nodes))
    if running is not None and running != wanted:
        _fail(f"another cluster is running ({running}); run `accord kafka down` first", 1)
    down = sorted(set(range(1, broker.nodes + 1)) - set(alive))
    if running is None:
        click.echo(f"starting {nodes} Kafka node(s) in {broker.state_dir} ...", err=True)
    elif down:  # degraded: the running nodes are left alone
        click.echo(f"starting node(s) {down} only; node(s) {sorted(alive)} keep running", err=True)
    try:
        bootstrap = broker.start()
    except LocalKafkaError as error:
        _fail(str(error), EXIT_UNUSABLE)
    mode = "PLAINTEXT, no authentication" if plaintext else "SASL_SSL (SCRAM-SHA-512), ACLs enforced"
    click.echo(f"{mode}; clients: source {broker.client_env_file}", err=True)
    click.echo(bootstrap)


@kafka.command()
def down() -> None:
    """Stop the JVMs that `up` started (only those: their pids are recorded)."""
    broker = LocalKafka(state_dir())
    if not broker.pids():
        click.echo("accord kafka: not running", err=True)
        return
    broker.stop()
    click.echo("accord kafka: stopped", err=True)


@kafka.command()
@click.option("--json", "as_json", is_flag=True, help="print nodes, pids and memory as JSON")
def status(as_json: bool) -> None:
    """Print the bootstrap servers if running (exit 0), else exit 3; a node down is named."""
    broker = LocalKafka(state_dir())
    bootstrap, alive = broker.bootstrap(), broker.alive_nodes()
    if not alive or bootstrap is None:
        _fail("not running", EXIT_NOT_RUNNING)
    down = sorted(set(broker.node_ids()) - set(alive))
    if as_json:
        nodes = {node: {"pid": pid, "memory": _resident_memory(pid)} for node, pid in sorted(alive.items())}
        click.echo(json.dumps({"bootstrap": bootstrap, "nodes": nodes, "down": down}, indent=1))
        return
    for node, pid in sorted(alive.items()):
        click.echo(f"node {node} pid {pid}: {_resident_memory(pid)}", err=True)
    if down:
        click.echo(f"degraded: node(s) {down} down; `accord kafka up` starts them (only them)", err=True)
    click.echo(bootstrap)


def _resident_memory(pid: int) -> str:
    """VmRSS from /proc, the figure that matters on a small machine."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "unknown memory"
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return "resident " + " ".join(line.split()[1:])
    return "unknown memory"
