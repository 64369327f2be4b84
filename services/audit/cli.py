"""`accord audit …`: operators replay the log to answer who decided what, when copies learnt it,
what stood on any past date, and whether anyone tampered with history.

Each command builds its settings here, replays through `replay`, and renders a
`Report`; Accord's errors (and the driver's, should one escape core) become one
clear line and exit 1, as does a report that found something broken.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from confluent_kafka import KafkaException

from services.audit import state_at as past_state
from services.audit import timeline as story
from services.audit.output import Format, ProgressBar, Report, render
from services.audit.rebuild import check_against_log, rebuild_report, write_copy
from services.audit.replay import listing_owners, listing_topics, refused_positions, size_of
from services.audit.state_at import TimeAxis
from services.audit.tables import (
    ledger_table,
    stale_table,
    state_notes,
    summary_table,
    verify_report,
    view_table,
)
from services.audit.verify import verify as verify_log
from services.core.cli_input import read_identifier, refuse_flags
from services.core.crypto import pseudonymise
from services.core.errors import AccordError
from services.core.policy import load_policy
from services.core.settings import KafkaSettings, KeystoreSettings, SecretSettings

F = TypeVar("F", bound=Callable[..., Any])


def formatted(command: F) -> F:
    """Add --json/--csv, and turn Accord's errors into a one-line failure."""

    @click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
    @click.option("--csv", "as_csv", is_flag=True, help="The primary table as CSV on stdout.")
    @wraps(command)
    def run(*args: Any, as_json: bool, as_csv: bool, **kwargs: Any) -> None:
        if as_json and as_csv:
            raise click.UsageError("choose one of --json and --csv")
        fmt: Format = "json" if as_json else "csv" if as_csv else "text"
        try:
            report = command(*args, **kwargs)
        except (AccordError, KafkaException) as e:
            raise click.ClickException(str(e)) from e
        click.echo(render(report, fmt))
        if report.failed:
            raise SystemExit(1)

    return run  # type: ignore[return-value]


def moment(value: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-03-01T12:00:00Z)") from e
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


processes_option = click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Replay in this many processes, each reading its share of the partitions (same answer).",
)


@click.group()
def audit() -> None:
    """Replay the log: timelines, past states, tamper checks, rebuilt copies."""


@audit.command()
@click.option("--listing", help="A listing id.")
@click.option("--subject-file", type=click.Path(allow_dash=True, path_type=Path),
              help="A file whose first line is a national id (- : stdin, or a prompt on a terminal); "
                   "pseudonymised here with ACCORD_PSEUDONYM_KEY.")  # fmt: skip
@click.option("--subject-ref", help="A subject_ref (pseudonym), for who has no key.")
@refuse_flags("--subject", "--national-id", source="--subject-file (- for standard input or the prompt)")
@formatted
def timeline(listing: str | None, subject_file: Path | None, subject_ref: str | None) -> Report:
    """Every event of a listing or subject, and when each agency's copy applied it."""
    if sum(x is not None for x in (listing, subject_file, subject_ref)) != 1:
        raise click.UsageError("give exactly one of --listing, --subject-file, --subject-ref")
    kafka, policy = KafkaSettings(), load_policy()
    connection, topics = kafka.connection, kafka.topics
    names = listing_topics(topics, policy)
    if listing is not None:
        listings, title = {listing}, f"Timeline of listing {listing}"
    else:
        ref = subject_ref or pseudonymise(
            read_identifier("national id", subject_file),
            SecretSettings().pseudonym_key.get_secret_value().encode(),
        )
        with ProgressBar("finding the subject's listings", size_of(connection, names)) as meter:
            listings = story.subject_listings(connection, names, ref, meter)
        title = f"Timeline of subject {ref} ({len(listings)} listings)"
    everything = [*names, *topics.all_copies_applied(policy.enforcers), topics.findings, topics.rejected]
    with ProgressBar("replaying", size_of(connection, everything)) as meter:
        found = story.gather(connection, topics, policy, listings, meter)
    return story.report(found, title)


@audit.command("state-at")
@click.argument("at", metavar="T")
@click.option("--agency", help="Show this agency's expected view.")
@click.option("--compare", is_flag=True, help="List copies behind their view at T, by acknowledgements.")
@click.option("--ledger", "show_ledger", is_flag=True, help="List every listing's state at T.")
@click.option(
    "--clock",
    type=click.Choice(["recorded", "decided"]),
    default="recorded",
    show_default=True,
    help="Fold events recorded by T, or decided (occurred) by T.",
)
@click.option(
    "--sla",
    type=float,
    default=0.0,
    show_default=True,
    help="With --compare: only copies behind for longer than this many seconds.",
)
@processes_option
@formatted
def state_at(
    at: str, agency: str | None, compare: bool, show_ledger: bool, clock: str, sla: float, processes: int
) -> Report:
    """The ledger and every agency's expected view as they stood at time T (ISO 8601, UTC if no zone)."""
    when = moment(at)
    kafka, policy = KafkaSettings(), load_policy()
    if agency is not None and agency not in policy.enforcers:
        raise click.BadParameter(f"{agency} enforces no measure; enforcers: {', '.join(policy.enforcers)}")
    connection, topics = kafka.connection, kafka.topics
    names = listing_topics(topics, policy)
    refused = refused_positions(connection, topics.rejected)
    with ProgressBar("replaying", size_of(connection, names)) as meter:
        axis, wanted = cast(TimeAxis, clock), past_state.Wanted(agency, show_ledger, compare)
        past = past_state.replay_to(connection, names, policy, when, axis, refused, meter, processes, wanted)
    tables = [summary_table(past)]
    if show_ledger:
        tables.insert(0, ledger_table(past))
    if agency is not None:
        tables.insert(0, view_table(past, agency))
    if compare:
        acks = past_state.acknowledged(connection, topics.all_copies_applied(policy.enforcers), when)
        behind = [s for s in past_state.stale(past, acks, sla) if agency in (None, s.agency)]
        tables.insert(0, stale_table(past, behind))
    return Report(tables, state_notes(past))


@audit.command()
@processes_option
@formatted
def verify(processes: int) -> Report:
    """Check every signature and every per-listing hash chain; exit 1 if anything is broken."""
    kafka, policy = KafkaSettings(), KeystoreSettings().policy_with_keys()
    connection, topics = kafka.connection, kafka.topics
    names = listing_topics(topics, policy)
    owners = listing_owners(topics, policy)
    with ProgressBar("verifying", size_of(connection, names)) as meter:
        result = verify_log(connection, owners, policy, meter, processes)
    report = verify_report(result, names)
    report.failed = not result.sound
    return report


@audit.command()
@click.option("--agency", required=True, help="The enforcing agency whose copy to rebuild.")
@click.option("--store", "url", required=True, help="An EMPTY store: sqlite:///path.db or postgresql://...")
@formatted
def rebuild(agency: str, url: str) -> Report:
    """Build a fresh copy of an agency's view from the log, checked against the listing topics."""
    kafka, policy = KafkaSettings(), load_policy()
    if agency not in policy.enforcers:
        raise click.BadParameter(f"{agency} enforces no measure; enforcers: {', '.join(policy.enforcers)}")
    connection, topics = kafka.connection, kafka.topics
    views, names = topics.views(agency), listing_topics(topics, policy)
    with ProgressBar(f"rebuilding from {views}", size_of(connection, [views])) as meter:
        result, built = write_copy(connection, views, agency, url, meter)
    refused = refused_positions(connection, topics.rejected)
    with ProgressBar("checking against the listing log", size_of(connection, names)) as meter:
        check_against_log(result, built, connection, names, policy, refused, meter)
    return rebuild_report(result, url)
