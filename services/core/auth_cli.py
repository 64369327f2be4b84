"""`accord auth issue --agency A --role R | revoke`: bearer tokens for Accord's HTTP servers.

The token is printed once, on stdout, and never stored: the credentials file
(`ACCORD_CREDENTIALS_FILE`, 0600) keeps only its sha256 and the principal it names.
"""

from __future__ import annotations

import click

from services.core.cli_input import ask
from services.core.credentials import ROLES, FileCredentials
from services.core.errors import AccordError
from services.core.policy import load_policy
from services.core.settings import KeystoreSettings
from services.core.topics import BACKBONE


@click.group()
def auth() -> None:
    """Credentials for the HTTP APIs (publisher: clerks; copies: officers and the reconciler)."""


@auth.command()
@click.option("--agency", required=True, help=f"the agency it acts for ({BACKBONE} for the reconciler)")
@click.option("--role", required=True, type=click.Choice(ROLES), help="clerk, officer or reconciler")
def issue(agency: str, role: str) -> None:
    """Print a new token (once); store only its hash."""
    if agency not in load_policy().agency_by_id:
        raise click.BadParameter(f"{agency!r} is not an agency of the policy", param_hint="--agency")
    settings = KeystoreSettings()
    try:
        token = FileCredentials(settings.credentials_file).issue(agency, role)
    except AccordError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"token for {agency} ({role}) stored as a hash in {settings.credentials_file}", err=True)
    click.echo(token)


@auth.command()
def revoke() -> None:
    """Withdraw a token, read from standard input or a prompt (never a flag: it would land in ps)."""
    settings = KeystoreSettings()
    try:
        principal = FileCredentials(settings.credentials_file).withdraw(ask("token"))
    except AccordError as e:
        raise click.ClickException(str(e)) from e
    if principal is None:
        raise click.ClickException(f"no such token in {settings.credentials_file}")
    click.echo(f"withdrawn: the token of {principal}", err=True)
