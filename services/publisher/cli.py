"""`accord keys init` and `accord publish issue|correct|revoke|exempt|object|resolve|show|serve`.

A command comes from `--file` (JSON or YAML) and/or flags (flags win). Every call
prints exactly one JSON document on stdout, whatever happens: the receipt, or
`{"refused": code, "reason": sentence}`. The exit status says which (see
`refusals`): 0 admitted by the ledger, 3 refused by a rule (here or by the ledger) or
malformed, 4 version conflict, 5 broker unreachable, 6 configuration missing, 7 in the
log but not yet decided by the ledger (the receipt, with `ask_again`: the
`accord publish verdict` command that asks again).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml
from pydantic import BaseModel, ValidationError

from services.core.commands import (
    CorrectCommand,
    ExemptCommand,
    IssueCommand,
    ObjectCommand,
    ResolveCommand,
    RevokeCommand,
)
from services.core.crypto import Keystore
from services.core.errors import AccordError
from services.core.policy import load_policy
from services.publisher.client import Publisher
from services.publisher.errors import Undecided
from services.publisher.refusals import Refusal, invalid_model, refusal_of
from services.publisher.settings import PublisherOptions, PublisherSettings

# verb -> (command model, [(flag, dotted field, kind)]): kind "one" or "many" take text that pydantic
# parses (dates, numbers); "flag" is a switch. "--detail key=value" may repeat.
Spec = list[tuple[str, str, str]]
LISTING: Spec = [("--listing-id", "listing_id", "one")]
VERSION: Spec = [("--expected-version", "expected_version", "one")]
VERBS: dict[str, tuple[type[BaseModel], Spec]] = {
    "issue": (IssueCommand, [
        ("--subject-kind", "subject_kind", "one"), ("--national-id", "national_id", "one"),
        ("--full-name", "full_name", "one"), ("--birth-date", "birth_date", "one"),
        ("--student", "is_full_time_student", "flag"), ("--debt-kind", "debt_kind", "one"),
        ("--force-majeure", "force_majeure", "flag"), ("--category", "category", "one"),
        ("--measure", "measures", "many"), ("--legal-basis", "legal_basis", "one"),
        ("--severity", "severity", "one"), ("--case-ref", "case_ref", "one"),
        ("--detail", "details", "many"), ("--notice-served-at", "notice_served_at", "one"),
        ("--effective-from", "effective_from", "one"), ("--expires-at", "expires_at", "one"),
    ]),
    "correct": (CorrectCommand, [
        *LISTING, *VERSION, ("--reason", "reason", "one"), ("--measure", "changes.measures", "many"),
        ("--legal-basis", "changes.legal_basis", "one"), ("--severity", "changes.severity", "one"),
        ("--full-name", "changes.full_name", "one"), ("--detail", "changes.details", "many"),
        ("--expires-at", "changes.expires_at", "one"),
    ]),
    "revoke": (RevokeCommand, [*LISTING, *VERSION, ("--reason", "reason", "one"), ("--note", "note", "one")]),
    "exempt": (ExemptCommand, [
        *LISTING, *VERSION, ("--measure", "measure", "one"), ("--starts-at", "starts_at", "one"),
        ("--ends-at", "ends_at", "one"), ("--reason", "reason", "one"),
    ]),
    "object": (ObjectCommand, [
        *LISTING, *VERSION, ("--kind", "kind", "one"), ("--grounds", "grounds", "one"),
    ]),
    "resolve": (ResolveCommand, [
        *LISTING, ("--objection-id", "objection_id", "one"), *VERSION, ("--outcome", "outcome", "one"),
        ("--required-action", "required_action", "one"), ("--note", "note", "one"),
    ]),
}  # fmt: skip


def _print(document: dict[str, Any]) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=True))


def _refuse(refusal: Refusal) -> NoReturn:
    _print({"refused": refusal.code, "reason": refusal.reason})
    sys.exit(refusal.exit_code)


def _read_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        _refuse(Refusal("invalid_command", f"{path} is not readable YAML or JSON: {e}", 422, 3))
    if not isinstance(loaded, dict):
        _refuse(Refusal("invalid_command", f"{path} must hold one mapping of command fields", 422, 3))
    return loaded


def _value(field: str, given: Any) -> Any:
    if field.endswith("details"):
        pairs = [item.partition("=") for item in given]
        return {key: value for key, _, value in pairs}
    return list(given) if isinstance(given, tuple) else given


def _merge(data: dict[str, Any], flags: dict[str, Any], spec: Spec) -> dict[str, Any]:
    for flag, field, _ in spec:
        given = flags.get(flag.lstrip("-").replace("-", "_"))
        if given is None or given == ():
            continue
        *parents, leaf = field.split(".")
        target = data
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = _value(field, given)
    return data


@click.group()
def keys() -> None:
    """The agencies' Ed25519 signing keys."""


@keys.command("init")
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=None,
              help="keystore folder (default $ACCORD_KEYSTORE or ~/.local/state/accord/keys)")  # fmt: skip
def keys_init(folder: Path | None) -> None:
    """Make a signing key for every agency of the policy that has none; print the public keys."""
    target = folder or PublisherOptions().keystore
    public = Keystore(target).create([a.id for a in load_policy().agencies])
    _print({"keystore": str(target), "public_keys": public})


@click.group()
def publish() -> None:
    """Publish listings, corrections, revocations, exemptions, objections and resolutions."""


def _run(model: type[BaseModel], spec: Spec, options: dict[str, Any]) -> None:
    data = _merge(_read_file(options.pop("file")), options, spec)
    for field in ("agency", "request_id"):
        if options.get(field):
            data[field] = options[field]
    try:
        command = model.model_validate(data)
    except ValidationError as e:
        _refuse(invalid_model(e))
    try:
        with Publisher.from_settings(PublisherSettings.from_env()) as publisher:
            receipt = publisher.submit(command)  # type: ignore[arg-type]  # every VERBS model is a command
    except Undecided as e:
        _undecided(e)
    except AccordError as e:
        _refuse(refusal_of(e))
    _print(receipt.model_dump(mode="json"))


def _undecided(error: Undecided) -> NoReturn:
    """The receipt of an event the ledger has not ruled on yet, and the command that asks again."""
    r = error.receipt
    ask = f"accord publish verdict --agency {r.agency} --listing-id {r.listing_id} --event-id {r.event_id}"
    _print(r.model_copy(update={"ask_again": ask}).model_dump(mode="json"))
    sys.exit(refusal_of(error).exit_code)


def _verb(name: str, model: type[BaseModel], spec: Spec) -> click.Command:
    def callback(**options: Any) -> None:
        _run(model, spec, options)

    command: Callable[..., None] = callback
    for flag, field, kind in reversed(spec):
        switch = {"is_flag": True, "default": None} if kind == "flag" else {"multiple": kind == "many"}
        note = (
            " (repeatable; KEY=VALUE)"
            if field.endswith("details")
            else " (repeatable)"
            if kind == "many"
            else ""
        )
        command = click.option(flag, help=f"sets {field}{note}", **switch)(command)
    command = click.option("--request-id", help="idempotency key: a retry with it never publishes twice")(
        command
    )
    command = click.option("--file", type=click.Path(exists=True, path_type=Path), help="JSON or YAML")(
        command
    )
    command = click.option("--agency", help="the acting agency")(command)
    return click.command(name, help=(model.__doc__ or "").splitlines()[0])(command)


for _name, (_model, _spec) in VERBS.items():
    publish.add_command(_verb(_name, _model, _spec))


@publish.command()
@click.argument("listing_id")
def show(listing_id: str) -> None:
    """Print a listing as the ledger holds it now (its version is what a change must name)."""
    try:
        with Publisher.from_settings(PublisherSettings.from_env()) as publisher:
            state = publisher.current(listing_id)
    except AccordError as e:
        _refuse(refusal_of(e))
    if state is None:
        _refuse(Refusal("unknown_listing", f"no listing {listing_id} has been published", 404, 3))
    _print(state.model_dump(mode="json"))


@publish.command()
@click.option("--agency", required=True, help="the agency that sent the event")
@click.option("--listing-id", required=True)
@click.option("--event-id", required=True, help="the event_id of the receipt")
@click.option("--wait", default=0.0, show_default=True, type=float, help="seconds to wait for a verdict")
def verdict(agency: str, listing_id: str, event_id: str, wait: float) -> None:
    """Ask the ledger's verdict on an event that was not decided yet (exit 0, 3, 4 or 7 as for a command)."""
    try:
        with Publisher.from_settings(PublisherSettings.from_env()) as publisher:
            receipt = publisher.verdict(agency, listing_id, event_id, wait)
    except Undecided as e:
        _undecided(e)
    except AccordError as e:
        _refuse(refusal_of(e))
    _print(receipt.model_dump(mode="json"))


@publish.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the HTTP API (OpenAPI at /docs)."""
    import uvicorn

    from services.publisher.http import create_app

    uvicorn.run(create_app(PublisherSettings.from_env()), host=host, port=port)
