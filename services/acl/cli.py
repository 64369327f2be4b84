"""`accord acl plan | apply`: the ACLs the policy implies, printed or enforced (as the super user)."""

from __future__ import annotations

import click

from services.acl.apply import apply as apply_plan
from services.acl.plan import plan as derive
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
