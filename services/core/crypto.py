"""Pseudonyms, desensitised display, Ed25519 signatures and the per-listing hash chain.

An event's hash covers its Avro body under its writer schema, with `hash` and
`signature` blank, prefixed by the previous event's hash: altering any byte of any
event, or removing one, breaks the chain from there on. The signature is the
emitting agency's Ed25519 signature of that hash.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.core.errors import ConfigurationError
from services.core.events import Event
from services.core.serde import Decoded, body_bytes, registry, to_record

E = TypeVar("E", bound=Event)
_SEPARATORS = re.compile(r"[\s\-]")


def normalise_national_id(national_id: str) -> str:
    """One spelling per person: no spaces or hyphens, upper case (the trailing X of PRC ids)."""
    return _SEPARATORS.sub("", national_id).upper()


def pseudonymise(national_id: str, key: bytes) -> str:
    """The subject_ref: a keyed hash, so nobody without the key can test a guessed id."""
    if not key:
        raise ConfigurationError("no pseudonym key: set ACCORD_PSEUDONYM_KEY (never commit it)")
    digest = hmac.new(key, normalise_national_id(national_id).encode(), hashlib.sha256).hexdigest()
    return f"s-{digest[:40]}"


def mask_name(name: str) -> str:
    """Keep the first character of each word: 'Yu Hua' -> 'Y* H**', '张三丰' -> '张**'."""
    return " ".join(word[0] + "*" * (len(word) - 1) for word in name.split())


def mask_id(national_id: str) -> str:
    """Keep the first three and last two characters: enough to tell two cards apart at a desk."""
    value = normalise_national_id(national_id)
    if len(value) <= 5:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 5) + value[-2:]


def _blank_seal(record: dict[str, Any]) -> dict[str, Any]:
    blank = copy.copy(record)
    blank["envelope"] = {**record["envelope"], "hash": "", "signature": ""}
    return blank


def chain_hash(prev_hash: str, signed_body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + signed_body).hexdigest()


def hash_of_record(schema: Any, record: dict[str, Any]) -> str:
    """The hash an event with this writer schema and record must carry."""
    return chain_hash(record["envelope"]["prev_hash"], body_bytes(schema, _blank_seal(record)))


def private_key_from(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


def public_key_of(private: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def seal(event: E, prev_hash: str, private: Ed25519PrivateKey) -> E:
    """`event` linked to `prev_hash`, hashed and signed with the current writer schema."""
    linked = event.model_copy(update={"envelope": event.envelope.model_copy(update={"prev_hash": prev_hash})})
    schema = registry().writer(type(event).__name__).schema
    digest = hash_of_record(schema, to_record(linked))
    signature = base64.b64encode(private.sign(bytes.fromhex(digest))).decode()
    envelope = linked.envelope.model_copy(update={"hash": digest, "signature": signature})
    return linked.model_copy(update={"envelope": envelope})


def verify_signature(digest: str, signature: str, public_key: str) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(base64.b64decode(signature), bytes.fromhex(digest))
    except (InvalidSignature, ValueError):
        return False
    return True


def check_seal(decoded: Decoded, public_key: str) -> tuple[str, str] | None:
    """None if the event's hash and signature hold; else (reason code, sentence)."""
    envelope = decoded.record["envelope"]
    expected = hash_of_record(decoded.writer.schema, decoded.record)
    if envelope["hash"] != expected:
        return "bad_hash", "the event's hash does not match its content: it was altered or never hashed"
    if not public_key:
        return "unknown_key", f"no public key is registered for agency {envelope['agency']}"
    if not verify_signature(expected, envelope["signature"], public_key):
        return "bad_signature", f"the signature is not {envelope['agency']}'s: forged or unsigned"
    return None


class Keystore:
    """A local folder of Ed25519 keys, one file per agency (`<agency>.key`, base64, mode 600)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def create(self, agencies: list[str]) -> dict[str, str]:
        """Make a key for each agency that has none; return every agency's public key."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for agency in agencies:
            path = self.folder / f"{agency}.key"
            if not path.exists():
                raw = Ed25519PrivateKey.generate().private_bytes_raw()
                path.write_text(base64.b64encode(raw).decode())
                path.chmod(0o600)
        public = {a: public_key_of(self.private(a)) for a in agencies}
        (self.folder / "public_keys.yaml").write_text(yaml.safe_dump(public, sort_keys=True))
        return public

    def private(self, agency: str) -> Ed25519PrivateKey:
        path = self.folder / f"{agency}.key"
        if not path.exists():
            raise ConfigurationError(f"no signing key for {agency} in {self.folder}: run `accord keys init`")
        return private_key_from(path.read_text().strip())

    def public_keys(self) -> dict[str, str]:
        path = self.folder / "public_keys.yaml"
        if not path.exists():
            raise ConfigurationError(f"{path} is missing: run `accord keys init`")
        loaded = yaml.safe_load(path.read_text())
        return {str(k): str(v) for k, v in (loaded or {}).items()}
