"""Secret files are 0600 and their folders 0700 from the first byte; the trust anchor is refused when
others may change it; a publisher's key signs for its own agency only."""

from __future__ import annotations

import ast
import inspect
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core import files
from services.core.crypto import AgencyKey, Keystore, TrustAnchor, public_key_of
from services.core.errors import ConfigurationError, Forbidden
from services.core.settings import KeystoreSettings


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Umask 000: whatever a file or folder gets, it gets from the mode it was created with."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keys_are_0600_in_a_0700_folder_right_after_creation(tmp_path: Path, permissive_umask: None) -> None:
    store = Keystore(tmp_path / "nested" / "keys")
    store.create(["court", "railway"])
    assert mode(store.folder) == 0o700
    assert mode(store.key_file("court")) == mode(store.key_file("railway")) == 0o600


def test_a_secret_file_is_never_open_to_others_not_even_while_it_is_written(
    tmp_path: Path, permissive_umask: None
) -> None:
    path = tmp_path / "secret"
    descriptor_modes: list[int] = []
    real_fdopen = os.fdopen

    def watching(
        fd: int, *args: object, **kwargs: object
    ) -> object:  # sees the file before a byte is written
        descriptor_modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_fdopen(fd, *args, **kwargs)  # type: ignore[call-overload]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fdopen", watching)  # the `os` that `files` writes through
        files.create_secret(path, "s3cret")
    assert descriptor_modes == [0o600] and mode(path) == 0o600 and path.read_text() == "s3cret"


def test_secret_files_are_opened_with_their_mode_and_never_chmod_ed() -> None:
    """The code path itself: `os.open(..., O_CREAT | O_EXCL, mode)`, and no chmod anywhere after."""
    source = inspect.getsource(files)
    tree = ast.parse(source)
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert "os.open" in calls and "os.makedirs" in calls
    assert not {c for c in calls if c.endswith("chmod") or c.endswith("write_text") or c.endswith("mkdir")}
    assert "os.O_EXCL" in source
    writers = (
        "services.core.crypto",
        "services.core.credentials",
        "services.backbone.provision",
        "services.backbone.supervisor",
        "services.localkafka.security",
        "services.localkafka.broker",
        "services.acl.principals",
    )
    for module in writers:
        assert "chmod" not in inspect.getsource(__import__(module, fromlist=["_"])), module


def test_a_secret_file_is_not_overwritten(tmp_path: Path) -> None:
    files.create_secret(tmp_path / "secret", "first")
    with pytest.raises(FileExistsError):
        files.create_secret(tmp_path / "secret", "second")
    assert (tmp_path / "secret").read_text() == "first"


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "keys")
    store.create(["court"])
    os.chmod(store.key_file("court"), 0o640)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        store.private("court")


def anchor_with_court(tmp_path: Path) -> tuple[TrustAnchor, Keystore]:
    store = Keystore(tmp_path / "agency-keys")
    anchor = TrustAnchor(tmp_path / "backbone" / "trust" / "public_keys.yaml")
    anchor.register(store.create(["court", "railway"]))
    return anchor, store


def test_the_trust_anchor_is_written_only_its_owner_may_change(
    tmp_path: Path, permissive_umask: None
) -> None:
    anchor, store = anchor_with_court(tmp_path)
    assert mode(anchor.path) == 0o644 and mode(anchor.path.parent) == 0o755
    assert anchor.public_keys()["court"] == public_key_of(store.private("court"))
    assert not anchor.path.is_relative_to(store.folder)


@pytest.mark.parametrize("target", ["file", "folder"])
@pytest.mark.parametrize("loose", [0o020, 0o002])
def test_a_group_or_world_writable_trust_anchor_is_refused(
    tmp_path: Path, permissive_umask: None, target: str, loose: int
) -> None:
    anchor, _ = anchor_with_court(tmp_path)
    path = anchor.path if target == "file" else anchor.path.parent
    os.chmod(path, mode(path) | loose)
    with pytest.raises(ConfigurationError, match="writable by group or others"):
        anchor.public_keys()
    with pytest.raises(ConfigurationError, match="writable by group or others"):
        KeystoreSettings(trust_anchor=anchor.path).policy_with_keys()  # what the ledger and audit load


def test_a_publisher_key_belongs_to_the_agency_the_anchor_names_and_signs_for_it_alone(
    tmp_path: Path, permissive_umask: None
) -> None:
    anchor, store = anchor_with_court(tmp_path)
    key = AgencyKey.load(store.key_file("court"), anchor.public_keys())
    assert key.agency == "court" and key.signing_for("court") is key.private
    with pytest.raises(Forbidden, match="not_your_agency"):
        key.signing_for("railway")
    stranger = Keystore(tmp_path / "stranger")
    stranger.create(["court"])  # a key the backbone never registered, even if named court.key
    with pytest.raises(ConfigurationError, match="no agency"):
        AgencyKey.load(stranger.key_file("court"), anchor.public_keys())


def test_the_development_keys_keep_the_backbones_key_and_the_anchor_apart(
    tmp_path: Path, permissive_umask: None
) -> None:
    settings = KeystoreSettings(
        keystore=tmp_path / "keys",
        trust_anchor=tmp_path / "trust" / "public_keys.yaml",
        backbone_key_file=tmp_path / "backbone" / "backbone.key",
    )
    trusted = settings.create_local(["court", "backbone"])
    assert set(trusted) == {"court", "backbone"}
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["court.key"]
    assert mode(tmp_path / "backbone") == 0o700 and mode(tmp_path / "backbone" / "backbone.key") == 0o600
    assert public_key_of(settings.backbone_key()) == trusted["backbone"]
