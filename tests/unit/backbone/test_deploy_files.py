"""The example unit files and compose services parse, restart on failure, are hardened, and name
commands and options the CLI really has: a renamed command must break this test, not a deployment."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import click
import pytest
import yaml

from services.cli import main

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes"}


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)  # a repeated key is an error
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(path.read_text(), source=str(path))
    return parser


def accord_command(argv: list[str]) -> click.Command:
    """The command `accord argv…` runs, after checking every `--option` of it exists."""
    command: click.Command = main
    words = iter(argv)
    for word in words:
        if not isinstance(command, click.Group):
            break
        found = command.get_command(click.Context(command), word)
        assert found is not None, f"`accord {' '.join(argv)}`: no command {word!r}"
        command = found
    options = {name for p in command.params for name in getattr(p, "opts", [])}
    given = {arg for arg in argv if arg.startswith("--")}
    assert given <= options, f"`accord {' '.join(argv)}`: unknown options {sorted(given - options)}"
    return command


def test_there_is_a_unit_per_long_running_service() -> None:
    assert {u.name for u in UNITS} >= {"accord-ledger.service", "accord-copy@.service",
                                       "accord-reconciler.service", "accord-publisher@.service"}  # fmt: skip


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_a_unit_restarts_on_failure_is_hardened_and_runs_an_accord_command(path: Path) -> None:
    service = unit(path)["Service"]
    assert service["Restart"] == "on-failure" and service["RestartSec"]
    assert {key: service.get(key) for key in HARDENING} == HARDENING
    assert service["User"] != "root" and unit(path)["Unit"]["StartLimitBurst"]
    executable, *argv = shlex.split(service["ExecStart"])
    assert executable.endswith("/bin/accord")
    accord_command(argv)


def test_compose_runs_each_service_with_a_restart_policy_and_real_commands() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    accord = {name: s for name, s in services.items() if not name.startswith("kafka-")}
    assert {"ledger", "reconciler", "accord-init"} <= set(accord)
    assert any(name.startswith("copy-") for name in accord)
    for name, service in accord.items():
        assert service["restart"] == "on-failure", name
        assert service["environment"]["ACCORD_REPLICATION_FACTOR"] == "3"
        assert accord_lines(service["command"]), name
        for argv in accord_lines(service["command"]):
            accord_command(argv)


def accord_lines(command: list[str]) -> list[list[str]]:
    """The `accord …` invocations of a compose command, itself or each step of its `sh -c "a && b"`."""
    steps = [shlex.split(step) for step in command[-1].split("&&")] if command[0] == "sh" else [command]
    return [step[1:] for step in steps if step[0] == "accord"]
