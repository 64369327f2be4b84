"""`accord <service> <verb>`: the one command line, assembled from each service's own group.

Each service module builds its commands from its own settings; this module only
mounts them, importing each lazily so that `accord kafka up` does not pay for Faust.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of a click group or command.
COMMANDS: dict[str, str] = {
    "kafka": "services.localkafka.cli:kafka",
    "backbone": "services.backbone:backbone",
    "acl": "services.acl.cli:acl",
    "asyncapi": "services.acl.cli:asyncapi",
    "keys": "services.publisher.cli:keys",
    "auth": "services.core.auth_cli:auth",
    "publish": "services.publisher.cli:publish",
    "ledger": "services.ledger.cli:ledger",
    "copy": "services.copies.cli:copy",
    "reconcile": "services.reconciler.cli:reconcile",
    "demo": "services.demo.cli:demo",
    "audit": "services.audit.cli:audit",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup)
def main() -> None:
    """Accord: keep every agency's copy of credit-restriction listings in accord with the truth."""
