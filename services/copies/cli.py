"""`accord copy run | check | serve`: one agency's copy of its view, and the front-line check."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType

import click

from services.copies.check import CheckAnswer, answer
from services.copies.clients import kafka_clients
from services.copies.lag import view_lag
from services.copies.settings import CopySettings
from services.copies.sink import Sink
from services.core import collector, logs
from services.core.cli_input import read_identifier, refuse_flags
from services.core.clock import utc_now
from services.core.copystore import CopyStore, open_store
from services.core.crypto import pseudonymise
from services.core.errors import AccordError
from services.core.ops import LOG_JSON, OPS, serve_ops
from services.core.policy import load_policy

EXIT_STALE = 2  # `check` answered, but from a copy that may be out of date or is damaged


def _enforcer(ctx: click.Context, param: click.Parameter, agency: str) -> str:
    """Only an agency that enforces a measure has a view, and so a copy."""
    enforcers = load_policy().enforcers
    if agency not in enforcers:
        raise click.BadParameter(f"{agency!r} enforces no measure; enforcing agencies are {enforcers}")
    return agency


AGENCY = click.option(
    "--agency", required=True, callback=_enforcer, help="the enforcing agency whose copy this is"
)
STORE = click.option(
    "--store", required=True, envvar="ACCORD_COPY_STORE", help="sqlite:///path.db or postgresql://..."
)


@click.group()
def copy() -> None:
    """An agency's copy of its view: keep it applied, and answer checks from it."""


def _open(url: str, agency: str) -> CopyStore:
    try:
        return open_store(url, agency)
    except AccordError as e:
        raise click.ClickException(str(e)) from e


@copy.command()
@AGENCY
@STORE
@OPS
@LOG_JSON
def run(agency: str, store: str, ops: str | None, log_json: bool) -> None:
    """Apply views.<agency> to the store until stopped (SIGTERM or Ctrl-C)."""
    logs.configure(logging.INFO, as_json=log_json)
    settings = CopySettings.from_env()
    stopping: list[int] = []

    def stop(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    copy_store = _open(store, agency)
    endpoint = None
    try:
        feed, reporter = kafka_clients(settings.kafka.connection, agency, settings.kafka.topics.namespace)
        sink = Sink(agency, copy_store, settings, load_policy(), feed, reporter)
        endpoint = serve_ops(ops, sink.health)
        collector.settle()
        sink.run(lambda: bool(stopping))
    except AccordError as e:  # the store or the broker failed: stop loudly, a supervisor restarts us
        raise click.ClickException(str(e)) from e
    finally:
        if endpoint is not None:
            endpoint.close()
        copy_store.close()


@copy.command()
@AGENCY
@STORE
@click.option("--subject-file", type=click.Path(allow_dash=True, path_type=Path),
              help="a file whose first line is the national id (- : stdin); else asked for")  # fmt: skip
@click.option("--subject-ref", help="the subject's pseudonym, if you hold it instead")
@click.option("--json", "as_json", is_flag=True, help="print the answer as JSON")
@refuse_flags("--subject", "--national-id", source="--subject-file, standard input or the prompt")
def check(agency: str, store: str, subject_file: Path | None, subject_ref: str | None, as_json: bool) -> None:
    """Is the subject under a measure this agency enforces? Exit 2 when the copy may be stale.

    The national id is read from --subject-file, else standard input or a prompt: never a flag.
    """
    settings = CopySettings.from_env()
    if subject_file and subject_ref:
        raise click.UsageError("give one of --subject-file and --subject-ref")
    key = settings.secrets.pseudonym_key.get_secret_value().encode()
    try:
        ref = subject_ref or pseudonymise(read_identifier("national id", subject_file), key)
    except AccordError as e:
        raise click.ClickException(str(e)) from e
    copy_store = _open(store, agency)
    try:
        lag = view_lag(
            settings.kafka.connection,
            settings.kafka.topics.views(agency),
            copy_store.positions(),
            settings.options.lag_timeout_s,
        )
        result = answer(copy_store, ref, lag, utc_now(), settings.options.sla_s)
    except AccordError as e:
        raise click.ClickException(str(e)) from e
    finally:
        copy_store.close()
    click.echo(result.model_dump_json(indent=1) if as_json else render(result))
    if not result.trustworthy:
        sys.exit(EXIT_STALE)


def render(result: CheckAnswer) -> str:
    """The answer as an officer reads it at a desk."""
    lines = [result.advice, ""]
    for listing in result.listings:
        lines.append(f"listing {listing.listing_id} v{listing.version} ({listing.status}), issued by "
                     f"{listing.issuer or 'n/a'}, case {listing.case_ref or 'n/a'}")  # fmt: skip
        if listing.legal_basis:
            lines.append(f"  legal basis: {listing.legal_basis}")
        lines += [f"  {m.measure}: {m.why}" for m in listing.measures]
    lines += [f"listing {d.listing_id or '?'}: DAMAGED ({d.reason})" for d in result.damaged]
    if not result.listings and not result.damaged:
        lines.append(f"no listing of {result.subject_ref} in the copy of {result.agency}")
    fresh = result.freshness
    lines += [
        "",
        f"copy freshness: {fresh.note}",
        f"  positions {fresh.positions}, lag {fresh.lag if fresh.lag is not None else 'unknown'}, "
        f"last applied {fresh.last_applied_at.isoformat() if fresh.last_applied_at else 'never'}",
    ]
    return "\n".join(lines)


@copy.command()
@AGENCY
@STORE
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              envvar="ACCORD_COPY_SERVE_WORKERS", help="processes answering on the port")  # fmt: skip
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              envvar="ACCORD_COPY_SERVE_ACCESS_LOG", help="log each request")  # fmt: skip
@LOG_JSON
def serve(
    agency: str, store: str, host: str, port: int, workers: int, access_log: bool, log_json: bool
) -> None:
    """Serve GET/POST /check (officers of AGENCY), /probe/* (the reconciler) and GET /health over HTTP."""
    import uvicorn

    from services.copies.serve import serve as run_server

    try:
        as_json = logs.configure(logging.INFO, as_json=log_json)
        log_config = None if as_json else uvicorn.config.LOGGING_CONFIG
        run_server(agency, store, host, port, workers, log_config, access_log)
    except AccordError as e:
        raise click.ClickException(str(e)) from e
