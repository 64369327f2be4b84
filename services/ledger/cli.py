"""`accord ledger run | status`: the ledger worker, and whether it is making progress."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from services.core.errors import AccordError
from services.core.ops import LOG_JSON, OPS


@click.group()
def ledger() -> None:
    """The authoritative ledger: verifies every listing event and feeds each agency its view."""


@ledger.command()
@click.option("--data-dir", type=click.Path(path_type=Path), help="table storage (ACCORD_LEDGER_DATA_DIR)")
@click.option("--store", help="rocksdb:// (default) or memory:// (env ACCORD_LEDGER_STORE)")
@OPS
@LOG_JSON
def run(data_dir: Path | None, store: str | None, ops: str | None, log_json: bool) -> None:
    """Run the worker until stopped; it exits non-zero if a handler ever fails."""
    import faust

    from services.core import collector, logs
    from services.ledger.app import build_app
    from services.ledger.layout import prepare
    from services.ledger.settings import LedgerSettings
    from services.ledger.worker import trust

    as_json = logs.configure(as_json=log_json)  # first: the Kafka clients made next log as chosen
    overrides = {k: v for k, v in {"data_dir": data_dir, "store": store}.items() if v is not None}
    try:
        settings = LedgerSettings.from_env(**overrides)
        prepare(settings.kafka, trust(settings)[0])
        app = build_app(settings, ops=ops)
    except AccordError as e:
        raise click.ClickException(str(e)) from e
    if as_json:  # Faust's worker configures logging again: with our handler alone
        app.conf.logging_config = {"version": 1, "disable_existing_loggers": False, "root": {"handlers": []}}
        app.conf.loghandlers = [logs.handler(as_json=True)]
    worker = faust.Worker(app, loglevel=settings.options.log_level, quiet=True)
    if not sys.stdout.isatty():
        worker.spinner = None  # its cursor codes only garble a log file
    collector.settle()  # set up: what exists now lives as long as the worker
    worker.execute_from_commandline()


@ledger.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("ledger-data"), show_default=True)
@click.option("--stale-after", type=float, default=30.0, show_default=True, help="seconds without a report")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def status(data_dir: Path, stale_after: float, as_json: bool) -> None:
    """Print the worker's last verdict; exit 1 if it is unhealthy, missing or older than --stale-after.

    The verdict is the agent's progress (messages handled against the input still unread),
    judged by the worker; the report's age only shows that the worker is still judging."""
    path = data_dir / "health.json"
    if not path.exists():
        click.echo(f"no progress report at {path}: the ledger has not run here", err=True)
        sys.exit(1)
    report = json.loads(path.read_text())
    age = (datetime.now(UTC) - datetime.fromisoformat(report["written_at"])).total_seconds()
    shown = {**report, "report_age_s": round(age, 1)}
    click.echo(json.dumps(shown, indent=1) if as_json else "\n".join(f"{k}: {v}" for k, v in shown.items()))
    if age > stale_after:
        click.echo(f"the last report is {age:.0f} s old: the worker is stopped or stuck", err=True)
        sys.exit(1)
    if not report.get("healthy"):
        click.echo("unhealthy: " + "; ".join(report.get("reasons", [])), err=True)
        sys.exit(1)
