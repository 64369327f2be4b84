"""Raw identifiers into a command line tool without putting them on its command line.

A flag's value lands in `ps`, in shell history and in audit logs of the host, so a
national id or a full name is read from a file, from standard input, or from a
prompt that does not echo. The flags that used to take them are kept, hidden, only
to refuse with a sentence that says where to put the identifier instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
WHY = "raw identifiers are never taken from the command line (they would land in ps and shell history)"


def refuse_flags(*flags: str, source: str) -> Callable[[F], F]:
    """Hidden `flags` that refuse any value, telling the user to give it in `source` instead."""

    def refuse(ctx: click.Context, param: click.Parameter, value: object) -> None:
        if value is not None:
            raise click.UsageError(f"{param.opts[0]}: {WHY}; give it in {source}", ctx)

    def decorate(command: F) -> F:
        for flag in flags:
            hidden = click.option(flag, hidden=True, expose_value=False, is_eager=True, callback=refuse)
            command = hidden(command)
        return command

    return decorate


def ask(label: str) -> str:
    """One identifier: a hidden prompt on a terminal, else the next line of standard input."""
    if sys.stdin is not None and sys.stdin.isatty():
        return str(click.prompt(label, hide_input=True, err=True)).strip()
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line.strip():
        raise click.UsageError(f"no {label} on standard input (one per line) and no terminal to ask on")
    return line.strip()


def read_identifier(label: str, source: Path | None) -> str:
    """The identifier in `source` (its first line; `-` is standard input), or asked for."""
    if source is None or str(source) == "-":
        return ask(label)
    try:
        value = source.read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise click.UsageError(f"cannot read the {label} from {source}: {e}") from e
    if not value or not value[0].strip():
        raise click.UsageError(f"{source} holds no {label}")
    return value[0].strip()
