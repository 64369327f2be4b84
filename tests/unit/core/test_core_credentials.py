"""Bearer tokens: shown once, stored as hashes in a 0600 file, each naming one principal."""

from __future__ import annotations

import ast
import hashlib
import inspect
import os
import stat
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from services.cli import main
from services.core import credentials
from services.core.credentials import FileCredentials, Principal
from services.core.errors import ConfigurationError


def test_a_token_is_stored_only_as_its_hash_in_a_0600_file(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        store = FileCredentials(tmp_path / "auth" / "credentials.yaml")
        token = store.issue("court", "clerk")
    finally:
        os.umask(previous)
    text = store.path.read_text()
    assert token not in text and hashlib.sha256(token.encode()).hexdigest() in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.principal(token) == Principal("court", "clerk")
    assert store.principal(token + "x") is None and store.principal("") is None


def test_a_token_issued_elsewhere_is_known_without_a_restart(tmp_path: Path) -> None:
    server = FileCredentials(tmp_path / "credentials.yaml")
    assert server.principal("anything") is None  # loaded once, empty
    officer = FileCredentials(tmp_path / "credentials.yaml").issue("railway", "officer")
    assert server.principal(officer) == Principal("railway", "officer")


def test_lookups_compare_every_stored_hash_in_constant_time() -> None:
    """`hmac.compare_digest` on each stored hash, and the loop never leaves early."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(FileCredentials.principal)))
    (loop,) = [node for node in ast.walk(tree) if isinstance(node, ast.For)]
    inside = {type(node) for node in ast.walk(loop)}
    assert ast.Return not in inside and ast.Break not in inside
    assert "hmac.compare_digest" in ast.unparse(loop)


@pytest.mark.parametrize(
    ("agency", "role"), [("court", "judge"), ("court", "reconciler"), ("backbone", "clerk")]
)
def test_unknown_roles_and_a_reconciler_outside_the_backbone_are_refused(
    tmp_path: Path, agency: str, role: str
) -> None:
    with pytest.raises(ConfigurationError):
        FileCredentials(tmp_path / "credentials.yaml").issue(agency, role)


def test_a_credentials_file_others_may_read_is_refused(tmp_path: Path) -> None:
    store = FileCredentials(tmp_path / "credentials.yaml")
    token = store.issue("court", "clerk")
    os.chmod(store.path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        FileCredentials(store.path).principal(token)


def test_accord_auth_issue_prints_the_token_once_and_stores_its_hash(tmp_path: Path) -> None:
    env = {"ACCORD_CREDENTIALS_FILE": str(tmp_path / "credentials.yaml")}
    result = CliRunner(env=env).invoke(main, ["auth", "issue", "--agency", "court", "--role", "clerk"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    stored = yaml.safe_load((tmp_path / "credentials.yaml").read_text())
    assert stored == {credentials.token_hash(token): {"agency": "court", "role": "clerk"}}
    unknown = CliRunner(env=env).invoke(main, ["auth", "issue", "--agency", "nobody", "--role", "clerk"])
    assert unknown.exit_code == 2 and "not an agency" in unknown.output
    server = FileCredentials(tmp_path / "credentials.yaml")
    assert server.principal(token) == Principal("court", "clerk")
    withdrawn = CliRunner(env=env).invoke(main, ["auth", "revoke"], input=f"{token}\n")
    assert withdrawn.exit_code == 0 and "court (clerk)" in withdrawn.output
    assert server.principal(token) is None  # the running server refuses it from now on
    again = CliRunner(env=env).invoke(main, ["auth", "revoke"], input=f"{token}\n")
    assert again.exit_code == 1 and "no such token" in again.output
