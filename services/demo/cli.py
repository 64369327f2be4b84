"""`accord demo luoshan`: the Luoshan story against a running backbone, or a local broker it starts.

Tooling, not a service: it composes the backbone's services (as an operator would) and
may therefore import them; no service imports it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from services.core.connection import KafkaConnection
from services.core.errors import AccordError
from services.core.settings import KafkaSettings
from services.localkafka.broker import LocalKafka


def _log(line: str) -> None:
    click.echo(line, err=True)


@click.group()
def demo() -> None:
    """Stories told against a running backbone."""


@demo.command()
@click.option("--workdir", type=click.Path(path_type=Path), help="keep keys, copies and logs here")
def luoshan(workdir: Path | None) -> None:
    """A wrongful travel ban, revoked, then lost by a restored copy: found and repaired in seconds."""
    from services.demo.luoshan_demo import run_luoshan

    with tempfile.TemporaryDirectory(prefix="accord-luoshan-") as scratch:
        folder = workdir or Path(scratch)
        broker = _local_broker(folder)
        try:
            connection = _connection(broker)
            timeline = run_luoshan(connection, folder, click.echo)
        except AccordError as e:
            raise click.ClickException(str(e)) from e
        finally:
            if broker is not None:
                broker.stop()
    click.echo("")
    click.echo(timeline.summary())


def _connection(broker: LocalKafka | None) -> KafkaConnection:
    """The demo's broker: the local one it started (as its super user), else the environment's."""
    if broker is None:
        return KafkaSettings().connection
    broker.start()
    connection = broker.connection()
    assert connection is not None, "a started broker records its bootstrap"
    return connection


def _local_broker(folder: Path) -> LocalKafka | None:
    """None when KAFKA_BOOTSTRAP_SERVERS names a broker; else a local one, stopped after the demo."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return None
    _log("no KAFKA_BOOTSTRAP_SERVERS: starting a local Kafka for the demo (first run downloads its jars)")
    return LocalKafka(folder / "kafka")
