"""Who is calling an HTTP server: bearer tokens, stored only as hashes, each naming one principal.

A principal is an agency and a role: a `clerk` publishes for its agency, an `officer`
asks its agency's copy about a subject, the `reconciler` (the backbone's) asks copies
for hashes. A token is shown once when it is issued (`accord auth issue`) and never
stored: the credentials file keeps sha256(token) -> principal, 0600 from its first
byte. A lookup compares the presented token's hash with every stored one in constant
time, so the answer's timing says nothing about how close a guess came.

`CredentialStore` is the port; `FileCredentials` the one adapter (a YAML file, reread
when it changes, so an issued or withdrawn token takes effect without a restart).
`accord auth revoke` withdraws a token, read from standard input, never from a flag.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, get_args

import yaml

from services.core.errors import ConfigurationError
from services.core.files import SECRET_FILE, private_folder, refuse_readable_by_others, replace_file
from services.core.topics import BACKBONE

Role = Literal["clerk", "officer", "reconciler"]
ROLES: tuple[str, ...] = get_args(Role)


@dataclass(frozen=True)
class Principal:
    agency: str
    role: str

    def __str__(self) -> str:
        return f"{self.agency} ({self.role})"


def new_password() -> str:
    """A fresh secret for a Kafka principal (SCRAM) or a bearer token: 192 random bits."""
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CredentialStore(Protocol):
    """Whose token this is, if anyone's."""

    def principal(self, token: str) -> Principal | None: ...


class FileCredentials:
    """Token hashes and their principals in one YAML file (0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._entries: dict[str, Principal] = {}

    def principal(self, token: str) -> Principal | None:
        presented = token_hash(token)
        found = None
        for stored, principal in self._load().items():  # no early exit: constant time in the match
            if hmac.compare_digest(stored, presented):
                found = principal
        return found

    def issue(self, agency: str, role: str) -> str:
        """A new token for `agency` as `role`; only its hash is written. Shown to the caller once."""
        check_principal(agency, role)
        token = secrets.token_urlsafe(32)
        self._write({**self._load(), token_hash(token): Principal(agency, role)})
        return token

    def withdraw(self, token: str) -> Principal | None:
        """Forget `token`: from now on it is refused. Whose it was, if anyone's."""
        principal = self.principal(token)
        if principal is not None:
            self._write({k: v for k, v in self._load().items() if k != token_hash(token)})
        return principal

    def _write(self, entries: dict[str, Principal]) -> None:
        private_folder(self.path.parent)
        body = {digest: {"agency": p.agency, "role": p.role} for digest, p in entries.items()}
        replace_file(self.path, yaml.safe_dump(body, sort_keys=True), SECRET_FILE)

    def _load(self) -> dict[str, Principal]:
        if not self.path.exists():
            return {}
        status = self.path.stat()
        if self._seen != (status.st_mtime_ns, status.st_size):
            refuse_readable_by_others(self.path)
            loaded = yaml.safe_load(self.path.read_text()) or {}
            self._entries = {str(k): Principal(str(v["agency"]), str(v["role"])) for k, v in loaded.items()}
            self._seen = (status.st_mtime_ns, status.st_size)
        return self._entries


def check_principal(agency: str, role: str) -> None:
    if role not in ROLES:
        raise ConfigurationError(f"role {role!r} is not one of {list(ROLES)}")
    if (role == "reconciler") != (agency == BACKBONE):
        raise ConfigurationError(f"the reconciler role belongs to {BACKBONE!r} alone, and only to it")
