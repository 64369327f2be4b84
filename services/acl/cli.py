"""`accord acl plan | apply`: the ACLs the policy implies, printed or enforced (as the super user);
`accord asyncapi`: the AsyncAPI document of the topics, whose operations are those same grants."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import click
import yaml

from services.acl.apply import apply as apply_plan
from services.acl.plan import LITERAL, TOPIC, Grant
from services.acl.plan import plan as derive
from services.core.asyncapi import Access, document
from services.core.errors import AccordError
from services.core.policy import load_policy
from services.core.settings import KafkaSettings


@click.group()
def acl() -> None:
    """Kafka ACLs derived from schemas/policy/ (README "Security")."""


@acl.command()
def plan() -> None:
    """Print every grant, one per line: principal, operation, resource, name (`*`: a prefix)."""
    kafka = KafkaSettings()
    for grant in derive(load_policy(), kafka.topics):
        click.echo(grant.line())


@acl.command()
def apply() -> None:
    """Create the missing grants and delete those the policy no longer makes; idempotent."""
    kafka = KafkaSettings()
    try:
        changes = apply_plan(kafka.connection, derive(load_policy(), kafka.topics), kafka.namespace)
    except AccordError as e:
        raise click.ClickException(str(e)) from e
    click.echo(changes.text())


@click.command()
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="a file (default: stdout)")
@click.option("--format", "form", type=click.Choice(["yaml", "json"]), help="default: by suffix, else YAML")
def asyncapi(output: Path | None, form: str | None) -> None:
    """The AsyncAPI 3 document of this deployment (ACCORD_NAMESPACE): every topic, who sends and
    receives it (the ACL plan), its messages with their Avro schemas and CloudEvents headers."""
    kafka, policy = KafkaSettings(), load_policy()
    access = topic_access(derive(policy, kafka.topics), kafka.namespace)
    made = document(kafka.topics, policy, access, _version())
    as_json = (form or ("json" if output and output.suffix == ".json" else "yaml")) == "json"
    text = json.dumps(made, indent=2) + "\n" if as_json else yaml.safe_dump(made, sort_keys=False, width=110)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)


def topic_access(grants: list[Grant], namespace: str) -> list[Access]:
    """Each literal topic grant as (role, operation, topic), the role without the `User:<namespace>`."""
    prefix = f"User:{namespace}"
    return [
        Access(g.principal.removeprefix(prefix), g.operation, g.name)
        for g in grants
        if g.resource == TOPIC and g.pattern == LITERAL
    ]


def _version() -> str:
    try:
        return metadata.version("accord")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0.0.0"
