"""Pseudonyms, desensitised display, the chain hash, Ed25519 keys and signatures.

Pure of the wire format: nothing here knows Avro or Kafka, so the domain (the
publisher's rules, screening, admission) may use it freely. Sealing an event, which
hashes its Avro body, is `services.core.sealing`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import CryptoError

from services.core.errors import ConfigurationError, Forbidden
from services.core.files import (
    PUBLIC_FILE,
    create_secret,
    private_folder,
    public_folder,
    refuse_readable_by_others,
    refuse_writable_by_others,
    replace_file,
)

_SEPARATORS = re.compile(r"[\s\-]")


def normalise_national_id(national_id: str) -> str:
    """One spelling per person: no spaces or hyphens, upper case (the trailing X of PRC ids)."""
    return _SEPARATORS.sub("", national_id).upper()


def pseudonymise(national_id: str, key: bytes) -> str:
    """The subject_ref: a keyed hash, so nobody without the key can test a guessed id."""
    if not key:
        raise ConfigurationError("no pseudonym key: set ACCORD_PSEUDONYM_KEY (never commit it)")
    digest = hmac.digest(key, normalise_national_id(national_id).encode(), "sha256").hex()
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


def chain_hash(prev_hash: str, signed_body: bytes) -> str:
    """A link of a listing's chain: the previous event's hash, then this event's signed bytes."""
    return hashlib.sha256(prev_hash.encode() + signed_body).hexdigest()


def private_key_from(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


def public_key_of(private: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


SIGNATURE_BYTES = 64


def sign(private: Ed25519PrivateKey, digest: str) -> str:
    """The base64 Ed25519 signature of a hex digest (what an envelope's `signature` holds).

    Signed by libsodium: Ed25519 is deterministic, so it is the signature OpenSSL makes
    (`cryptography` keeps the keys), in about half the CPU here (28 against 51 µs)."""
    return base64.b64encode(crypto_sign(bytes.fromhex(digest), _secret(private))[:SIGNATURE_BYTES]).decode()


@lru_cache(maxsize=64)
def _secret(private: Ed25519PrivateKey) -> bytes:
    """libsodium's 64-byte secret key (seed and public key) for `private`, derived once."""
    return crypto_sign_seed_keypair(private.private_bytes_raw())[1]


@lru_cache(maxsize=1024)
def public_key(text: str) -> bytes:
    """The raw 32-byte Ed25519 key a base64 text spells, decoded once per process; a
    `ValueError` if it spells none."""
    raw = base64.b64decode(text)
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, not {len(raw)}")
    return raw


def verify_signature(digest: str, signature: str, public_key_text: str) -> bool:
    """Whether `signature` is the key's over the digest. Checked by libsodium, at half the CPU of
    OpenSSL here (76 against 155 µs: the ledger, the publisher and `audit verify` check every
    event); it is also the stricter of the two (small-order keys and points refused)."""
    try:
        raw = base64.b64decode(signature)
        if len(raw) != SIGNATURE_BYTES:  # libsodium reads its first 64 bytes as the signature
            return False
        crypto_sign_open(raw + bytes.fromhex(digest), public_key(public_key_text))
    except (CryptoError, ValueError):
        return False
    return True


class Keystore:
    """A folder (0700) of Ed25519 private keys, one file per agency (`<agency>.key`, base64, 0600).

    An agency's own keystore holds its key alone; a development machine's (`accord keys
    init`) holds every agency's. Public keys go to a `TrustAnchor`, never beside the keys.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def key_file(self, agency: str) -> Path:
        return self.folder / f"{agency}.key"

    def create(self, agencies: list[str]) -> dict[str, str]:
        """Make a key for each agency that has none; return those agencies' public keys."""
        private_folder(self.folder)
        for agency in agencies:
            if not self.key_file(agency).exists():
                raw = Ed25519PrivateKey.generate().private_bytes_raw()
                create_secret(self.key_file(agency), base64.b64encode(raw).decode())
        return {a: public_key_of(self.private(a)) for a in agencies}

    def private(self, agency: str) -> Ed25519PrivateKey:
        path = self.key_file(agency)
        if not path.exists():
            raise ConfigurationError(f"no signing key for {agency} in {self.folder}: run `accord keys init`")
        refuse_readable_by_others(path)
        return private_key_from(path.read_text().strip())


class TrustAnchor:
    """The agencies' public keys the backbone believes: a YAML file only its owner may change.

    It lives apart from every agency's private keys (in the backbone's own folder), and
    is refused when group or others could write it or its folder: whoever can edit it
    can make the ledger accept their signature as any agency's.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def public_keys(self) -> dict[str, str]:
        if not self.path.exists():
            raise ConfigurationError(f"{self.path} is missing: run `accord keys init` or `accord keys trust`")
        refuse_writable_by_others(self.path)
        loaded = yaml.safe_load(self.path.read_text())
        return {str(k): str(v) for k, v in (loaded or {}).items()}

    def register(self, keys: Mapping[str, str]) -> dict[str, str]:
        """Trust `keys` (agency -> public key) besides those already trusted; a new key replaces the old."""
        for agency, key in keys.items():
            try:
                Ed25519PublicKey.from_public_bytes(base64.b64decode(key, validate=True))
            except ValueError as e:
                raise ConfigurationError(f"{agency}'s public key is not a base64 Ed25519 key: {e}") from e
        public_folder(self.path.parent)
        trusted = {**(self.public_keys() if self.path.exists() else {}), **keys}
        replace_file(self.path, yaml.safe_dump(trusted, sort_keys=True), PUBLIC_FILE)
        return trusted


@dataclass(frozen=True)
class AgencyKey:
    """The one signing key a publisher holds, and the agency the trust anchor says it belongs to."""

    agency: str
    private: Ed25519PrivateKey

    @classmethod
    def load(cls, path: Path, trusted: Mapping[str, str]) -> AgencyKey:
        """The key in `path` (0600), and whose it is: the agency whose registered public key matches."""
        if not path.is_file():
            raise ConfigurationError(f"no signing key at {path}: set ACCORD_SIGNING_KEY_FILE to your key")
        refuse_readable_by_others(path)
        private = private_key_from(path.read_text().strip())
        owners = [agency for agency, key in trusted.items() if key == public_key_of(private)]
        if len(owners) != 1:
            raise ConfigurationError(
                f"the key in {path} is registered for {owners or 'no agency'} in the trust anchor; "
                "register its public key for exactly one agency (`accord keys trust`)"
            )
        return cls(owners[0], private)

    def signing_for(self, agency: str) -> Ed25519PrivateKey:
        """This key, if `agency` is its owner: a publisher never signs in another agency's name."""
        if agency != self.agency:
            raise Forbidden(
                "not_your_agency",
                f"this publisher holds {self.agency}'s key and acts for {self.agency} only, not {agency}",
            )
        return self.private
