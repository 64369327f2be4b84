"""`accord keys init|trust`, `accord publish issue|correct|revoke|exempt|object|resolve|show|verdict|serve`,
and `accord publish import FILE` (services/publisher/bulk.py).

A command comes from `--file` (JSON or YAML; `-` is standard input) and/or flags
(flags win). The subject's national id and full name never come from a flag: from
the file, else from standard input (one per line) or a prompt that does not echo.
The acting agency is the one the signing key belongs to (`ACCORD_SIGNING_KEY_FILE`);
`--agency` may only repeat it. Every call
prints exactly one JSON document on stdout, whatever happens: the receipt, or
`{"refused": code, "reason": sentence}`. The exit status says which (see
`refusals`): 0 admitted by the ledger, 3 refused by a rule (here or by the ledger) or
malformed, 4 version conflict, 5 broker unreachable, 6 configuration missing, 7 not
this agency's to do (`not_your_agency`), 8 in the log but not yet decided by the ledger
(the receipt, with `ask_again`: the `accord publish verdict` command that asks again).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml
from pydantic import BaseModel, ValidationError

from services.core import cloudevent, collector
from services.core.cli_input import ask, refuse_flags
from services.core.commands import (
    CorrectCommand,
    ExemptCommand,
    IssueCommand,
    ObjectCommand,
    ResolveCommand,
    RevokeCommand,
)
from services.core.crypto import Keystore, TrustAnchor
from services.core.errors import AccordError
from services.core.ops import LOG_JSON, OPS
from services.core.policy import load_policy
from services.core.settings import KeystoreSettings
from services.publisher.bulk import Report, Share, Source, bulk_producer, import_file
from services.publisher.client import Publisher
from services.publisher.errors import Undecided
from services.publisher.importfile import FORMATS, Line, format_of, import_id_of
from services.publisher.refusals import Refusal, invalid_model, refusal_of
from services.publisher.settings import PublisherSettings
from services.publisher.shards import WorkerFailed, run_shards

# verb -> (command model, [(flag, dotted field, kind)]): kind "one" or "many" take text that pydantic
# parses (dates, numbers); "flag" is a switch. "--detail key=value" may repeat.
Spec = list[tuple[str, str, str]]
LISTING: Spec = [("--listing-id", "listing_id", "one")]
VERSION: Spec = [("--expected-version", "expected_version", "one")]
VERBS: dict[str, tuple[type[BaseModel], Spec]] = {
    "issue": (IssueCommand, [
        ("--subject-kind", "subject_kind", "one"), ("--birth-date", "birth_date", "one"),
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
        ("--detail", "changes.details", "many"),
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
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        loaded = yaml.safe_load(text)  # JSON is YAML too
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
    """The agencies' Ed25519 signing keys, and the public keys the backbone trusts."""


@keys.command("init")
@click.option("--agency", help="make this agency's key alone, as an agency does on its own host")
@click.option("--dir", "folder", type=click.Path(path_type=Path), default=None,
              help="keystore folder (default $ACCORD_KEYSTORE or ~/.local/state/accord/keys)")  # fmt: skip
def keys_init(agency: str | None, folder: Path | None) -> None:
    """Make missing signing keys (0600, in a 0700 folder) and print the public keys.

    Without --agency, one machine plays every part (development): a key for every agency
    of the policy, the backbone's apart, all registered in the trust anchor.
    """
    settings = KeystoreSettings() if folder is None else KeystoreSettings(keystore=folder)
    if agency is None:
        public = settings.create_local([a.id for a in load_policy().agencies])
        _print({"keystore": str(settings.keystore), "trust_anchor": str(settings.trust_anchor),
                "public_keys": public})  # fmt: skip
        return
    store = Keystore(settings.keystore)
    public = store.create([agency])
    next_step = "give the public key to the backbone's operator: accord keys trust"
    _print({"key_file": str(store.key_file(agency)), "public_keys": public, "next": next_step})


@keys.command("trust")
@click.option("--agency", required=True, help="the agency whose public key this is")
@click.option("--public-key", required=True, help="its Ed25519 public key (base64), from `keys init`")
def keys_trust(agency: str, public_key: str) -> None:
    """Register (or rotate) an agency's public key in the trust anchor (the backbone operator's step)."""
    if agency not in load_policy().agency_by_id:
        raise click.BadParameter(f"{agency!r} is not an agency of the policy", param_hint="--agency")
    settings = KeystoreSettings()
    try:
        trusted = TrustAnchor(settings.trust_anchor).register({agency: public_key})
    except AccordError as e:
        raise click.BadParameter(str(e), param_hint="--public-key") from e
    _print({"trust_anchor": str(settings.trust_anchor), "agencies": sorted(trusted)})


@click.group()
def publish() -> None:
    """Publish listings, corrections, revocations, exemptions, objections and resolutions."""


def _run(model: type[BaseModel], spec: Spec, options: dict[str, Any]) -> None:
    data = _merge(_read_file(options.pop("file")), options, spec)
    if options.get("request_id"):
        data["request_id"] = options["request_id"]
    if options.get("agency"):
        data["agency"] = options["agency"]
    if model is IssueCommand:
        _ask_identifiers(data)
    if not data.get("agency"):
        data["agency"] = _own_agency()
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
    ask = f"accord publish verdict --listing-id {r.listing_id} --event-id {r.event_id}"
    _print(r.model_copy(update={"ask_again": ask}).model_dump(mode="json"))
    sys.exit(refusal_of(error).exit_code)


def _ask_identifiers(data: dict[str, Any]) -> None:
    """The subject's national id and full name: from the command file, else stdin or a prompt."""
    for field, label in (("national_id", "national id"), ("full_name", "full name")):
        if not data.get(field):
            try:
                data[field] = ask(label)
            except click.UsageError as e:
                _refuse(Refusal("invalid_command", e.message, 422, 3))


def _own_agency() -> str:
    """The agency the signing key belongs to: whom this publisher may act for."""
    keys = KeystoreSettings()
    try:
        return keys.agency_key(keys.policy_with_keys()).agency
    except AccordError as e:
        _refuse(refusal_of(e))


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
    command = click.option(
        "--file",
        type=click.Path(exists=True, allow_dash=True, path_type=Path),
        help="JSON or YAML; - is stdin",
    )(command)
    command = click.option("--agency", help="the acting agency: that of the signing key, if omitted")(command)
    command = refuse_flags("--national-id", "--full-name", source="--file, standard input or the prompt")(
        command
    )
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
@click.option("--listing-id", required=True)
@click.option("--event-id", required=True, help="the event_id of the receipt")
@click.option("--wait", default=0.0, show_default=True, type=float, help="seconds to wait for a verdict")
def verdict(listing_id: str, event_id: str, wait: float) -> None:
    """Ask the ledger's verdict on an event of this agency not yet decided (exit 0, 3, 4, 8)."""
    try:
        with Publisher.from_settings(PublisherSettings.from_env()) as publisher:
            receipt = publisher.verdict(listing_id, event_id, wait)
    except Undecided as e:
        _undecided(e)
    except AccordError as e:
        _refuse(refusal_of(e))
    _print(receipt.model_dump(mode="json"))


@publish.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="default: from the extension")
@click.option("--import-id", help="names this import (default: the file's content hash); keep it to "
              "re-run an edited file without publishing its unchanged lines again")  # fmt: skip
@click.option("--wait", type=float, default=None,
              help="seconds without any verdict before the rest is reported undecided "
              "(default ACCORD_DECISION_WAIT_S)")  # fmt: skip
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="processes sharing the lines by listing (checking and sealing is CPU work)")  # fmt: skip
@click.option("--share", hidden=True, help="K/N: run as worker K of N (set by --workers)")
@refuse_flags("--national-id", "--full-name", source="the file's lines")
def import_(
    path: Path, fmt: str | None, import_id: str | None, wait: float | None, workers: int, share: str | None
) -> None:
    """Publish a file of commands (JSON Lines or CSV), each checked like one; safe to re-run.

    Prints one JSON summary: refused lines by number with their reasons, undecided ones.
    Exit 0 if every line was admitted (now or by an earlier run), 3 if any was refused,
    8 if any is not decided yet (run it again to ask).
    """
    try:
        settings = PublisherSettings.from_env()
        source = Source(path, format_of(path, fmt), import_id or import_id_of(path))
        wait_s = settings.options.decision_wait_s if wait is None else wait
        if workers > 1 and share is None:
            report = run_shards(source, wait_s, workers)
        else:
            report = _import_here(settings, source, wait_s, _share(share))
    except WorkerFailed as e:
        _print(e.answer)
        sys.exit(e.exit_code)
    except AccordError as e:
        _refuse(refusal_of(e))
    if share is None:
        for refused in sorted(report.refused, key=lambda r: int(r["line"])):
            click.echo(f"line {refused['line']}: {refused['code']}: {refused['reason']}", err=True)
    _print(report.document())
    sys.exit(report.exit_code())


def _import_here(settings: PublisherSettings, source: Source, wait: float, share: Share) -> Report:
    key = settings.secrets.pseudonym_key.get_secret_value().encode()
    with Publisher.from_settings(settings) as publisher, _progress(source.path, share) as seen:
        producer = bulk_producer(
            settings.kafka.connection,
            settings.options.publish_timeout_s,
            cloudevent.source(settings.kafka.topics.namespace, publisher.signer.agency),
        )
        collector.settle()  # set up: what exists now lives as long as the import
        try:
            return import_file(publisher, producer, key, source, wait, seen, share)
        finally:
            producer.close()


def _share(given: str | None) -> Share:
    if given is None:
        return Share()
    index, _, of = given.partition("/")
    if not (index.isdigit() and of.isdigit() and int(index) < int(of)):
        raise click.BadParameter("K/N with 0 <= K < N", param_hint="--share")
    return Share(int(index), int(of))


@contextmanager
def _progress(path: Path, share: Share) -> Iterator[Callable[[Line], None]]:
    """A progress bar on stderr when it is a terminal (and this is the only process); else nothing."""
    if not sys.stderr.isatty() or share.of > 1:
        yield lambda line: None
        return
    with path.open("rb") as stream:
        total = sum(1 for _ in stream)
    with click.progressbar(length=total, label="importing", file=sys.stderr) as bar:
        done = [0]

        def seen(line: Line) -> None:
            bar.update(line.number - done[0])
            done[0] = line.number

        yield seen


@publish.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@OPS
@LOG_JSON
def serve(host: str, port: int, ops: str | None, log_json: bool) -> None:
    """Serve the HTTP API (OpenAPI at /docs); with --ops, its /health and /metrics on their own port."""
    import uvicorn

    from services.core import logs
    from services.core.ops import serve_ops
    from services.publisher.http import create_app

    as_json = logs.configure("INFO", as_json=log_json)  # first: the Kafka clients made next log as chosen
    app = create_app(PublisherSettings.from_env())
    try:
        endpoint = serve_ops(ops, app.state.acting.health)
    except AccordError as e:
        raise click.ClickException(str(e)) from e
    try:
        uvicorn.run(app, host=host, port=port, log_config=None if as_json else uvicorn.config.LOGGING_CONFIG)
    finally:
        if endpoint is not None:
            endpoint.close()
