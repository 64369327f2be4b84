"""`accord reconcile run | report`.

Settings are built here, from the environment and the options, and nowhere else.
Errors of the `AccordError` family become one clear line and a non-zero exit.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import click

from services.core import collector, logs
from services.core.copystore.probe import StoreProbe
from services.core.credentials import FileCredentials
from services.core.errors import AccordError
from services.core.kafka import create_topics
from services.core.ops import LOG_JSON, OPS, serve_ops
from services.core.policy import load_policy
from services.core.settings import KafkaSettings, KeystoreSettings, SecretSettings
from services.reconciler.board import Board
from services.reconciler.http import PageServer, build_page
from services.reconciler.lease import Lease
from services.reconciler.probe import HttpProbe, open_probe
from services.reconciler.report import Report, replay
from services.reconciler.runner import on_kafka
from services.reconciler.settings import ReconcilerSettings


def _log(line: str) -> None:
    logging.getLogger("accord.reconciler").info(line)


def _copies(given: tuple[str, ...], known: list[str]) -> dict[str, str]:
    urls = {}
    for item in given:
        agency, sep, url = item.partition("=")
        if not sep or not url:
            raise click.BadParameter(
                f"{item!r}: write AGENCY=URL, e.g. civil-aviation=http://ca-copy:8090 or =sqlite:///ca.db"
            )
        if agency not in known:
            raise click.BadParameter(f"{agency!r} enforces nothing; enforcing agencies are {known}")
        urls[agency] = url
    return urls


def _address(given: str) -> tuple[str, int]:
    host, sep, port = given.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter(f"{given!r}: write HOST:PORT, e.g. 127.0.0.1:8095", param_hint="--http")
    return host or "127.0.0.1", int(port)


def _serve(host: str, port: int) -> tuple[Board, PageServer]:
    """The operator page on `host:port`, guarded by the credentials file of `KeystoreSettings`."""
    board = Board()
    credentials = FileCredentials(KeystoreSettings().credentials_file)
    server = PageServer(build_page(board, credentials, lambda: datetime.now(UTC)), host, port)
    server.start()
    _log(f"operator page on http://{host}:{port}/ (the reconciler's bearer token)")
    return board, server


@click.group()
def reconcile() -> None:
    """Prove every agency's copy equal to its view; repair and report what is not."""


@reconcile.command()
@click.option(
    "--copy", "copies", multiple=True, metavar="AGENCY=URL",
    help="a copy to probe: its server (http://…, `accord copy serve`) or its store URL (repeatable)",
)  # fmt: skip
@click.option(
    "--http", "address", metavar="HOST:PORT", default=None,
    help="serve the operator page there (GET /, GET /listing?listing_id=), for the reconciler's token",
)  # fmt: skip
@OPS
@LOG_JSON
def run(copies: tuple[str, ...], address: str | None, ops: str | None, log_json: bool) -> None:
    """Reconcile until stopped (SIGTERM or Ctrl-C); findings on stderr and the `findings` topic."""
    logs.configure(logging.INFO, as_json=log_json, text_format="%(message)s")  # plain: the lines alone
    kafka, settings, policy = KafkaSettings(), ReconcilerSettings(), load_policy()
    urls = {**settings.copies, **_copies(copies, policy.enforcers)}
    where = None if address is None else _address(address)
    stop = threading.Event()

    def stopping(signum: int, _: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    probes: dict[str, HttpProbe | StoreProbe] = {}
    try:
        token = SecretSettings().http_token.get_secret_value()  # the reconciler's, for copies' servers
        probes.update({agency: open_probe(url, agency, token=token) for agency, url in urls.items()})
        create_topics(kafka.connection, kafka.topics.specs(policy.issuers, policy.enforcers),
                      kafka.partitions, kafka.replication_factor)  # fmt: skip
        for agency in sorted(set(policy.enforcers) - set(probes)):
            _log(f"no --copy for {agency}: acknowledgements only, no anti-entropy")
        lease = Lease(kafka.connection, kafka.topics.ledger, settings.lease_session_s)
        board, server = (None, None) if where is None else _serve(*where)
        runner = on_kafka(kafka, settings, policy, probes, _log, lease, board, settings.snapshot_folder())
        endpoint = serve_ops(ops, runner.health)
        collector.settle()  # set up: what exists now lives as long as the reconciler
        try:
            runner.run(stop)
        finally:
            lease.close()
            for running in (server, endpoint):
                if running is not None:
                    running.close()
    except AccordError as e:
        raise click.ClickException(str(e)) from e
    finally:
        for probe in probes.values():
            probe.close()


@reconcile.command()
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def report(as_json: bool) -> None:
    """Time to consistency per agency (p50/p99/max) and findings, replayed from the log."""
    kafka = KafkaSettings()
    try:
        replayed = replay(kafka.connection, kafka.topics, load_policy())
    except AccordError as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(_json(replayed), indent=1) if as_json else replayed.text())


def _json(report: Report) -> dict[str, Any]:
    """The report's figures, one record per (agency, kind): what the text table shows."""
    times = [{"agency": agency, "kind": kind, "count": s.count, "p50_s": s.p50, "p99_s": s.p99,
              "max_s": s.max} for (agency, kind), s in report.times.summary().items()]  # fmt: skip
    found = sorted(report.findings.items())
    findings = [{"agency": agency, "kind": kind, "count": n} for (agency, kind), n in found]
    return {"time_to_consistency": times, "findings": findings,
            "unacknowledged": report.unacknowledged, "unreadable": report.unreadable}  # fmt: skip
