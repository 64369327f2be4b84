"""Files that hold secrets or trust, with the right permissions from their first byte.

A file that is written and then chmod'ed is readable by others for a moment, and
`Path.mkdir` gives a folder whatever the umask allows. So secret files are opened
with `os.open(..., O_CREAT | O_EXCL, 0o600)` and folders made with `os.makedirs(mode=0o700)`
(the umask can only take bits away from these modes, never add them). Trust files
(the public keys the ledger believes) are refused when anyone but their owner may
change them, the way ssh refuses a world-writable `authorized_keys`.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

from services.core.errors import ConfigurationError

SECRET_FILE = 0o600
PRIVATE_FOLDER = 0o700
PUBLIC_FILE = 0o644
PUBLIC_FOLDER = 0o755


def private_folder(path: Path) -> Path:
    """`path` (and missing parents) made 0700 from the start; an existing folder is left as it is."""
    os.makedirs(path, mode=PRIVATE_FOLDER, exist_ok=True)
    return path


def public_folder(path: Path) -> Path:
    """A folder others may read but only its owner may change (0755 at most, whatever the umask)."""
    os.makedirs(path, mode=PUBLIC_FOLDER, exist_ok=True)
    return path


def create_secret(path: Path, text: str) -> None:
    """Write a new secret file, 0600 from the first byte; refuse to overwrite one."""
    _write_new(path, text, SECRET_FILE)


def replace_file(path: Path, data: str | bytes, mode: int) -> None:
    """Replace `path` atomically with `data`, the new file created with `mode` from its first byte."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    _write_new(partial, data, mode)
    os.replace(partial, path)


def _write_new(path: Path, data: str | bytes, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def refuse_writable_by_others(path: Path) -> None:
    """Refuse `path` and its folder if group or others may change them (so may replace what it says)."""
    for target in (path, path.parent):
        mode = target.stat().st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigurationError(
                f"{target} is writable by group or others (mode {stat.S_IMODE(mode):o}): "
                "anyone could change whose keys are trusted; chmod go-w it"
            )


def refuse_readable_by_others(path: Path) -> None:
    """Refuse a secret file that group or others may read or write (it must be 0600 or stricter)."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigurationError(
            f"{path} is open to group or others (mode {stat.S_IMODE(mode):o}): a secret, chmod 600 it"
        )
