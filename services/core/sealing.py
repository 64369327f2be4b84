"""Sealing events: the per-listing hash chain and the agency's signature over Avro bytes.

An event's hash covers its Avro body under its writer schema, with `hash` and
`signature` blank, prefixed by the previous event's hash: altering any byte of any
event, or removing one, breaks the chain from there on. The signature is the
emitting agency's Ed25519 signature of that hash. This is the one place where the
seal meets the wire format (`serde`, hence fastavro); the domain stays apart from it.

Avro writes a record as its fields' bytes one after another, so the body with the
seal blank is the sealed body with the two strings `hash` and `signature` replaced by
two empty ones (a zero byte each). Both directions use that: `seal_encoded` writes the
body once and splices the seal in, and `check_seal` hashes the bytes as received,
with no second encoding. `SealSpan` finds the two strings: it skips the fields before
them, which every schema version keeps simple (strings, ints, longs); a schema where
they are not falls back to encoding the record again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.core.avroreader import Malformed, long_at
from services.core.crypto import chain_hash, sign, verify_signature
from services.core.events import Event
from services.core.serde import MARKER, Decoded, WriterSchema, body_bytes, body_writer, registry, to_record

E = TypeVar("E", bound=Event)

_VARIABLE = frozenset({"string", "bytes"})  # a zigzag length, then that many bytes
_VARINT = frozenset({"int", "long"})
_FIXED = {"null": 0, "boolean": 1, "float": 4, "double": 8}
_PRIMITIVE = _VARIABLE | _VARINT | _FIXED.keys()
BLANK_SEAL = b"\x00\x00"  # two empty Avro strings: `hash` and `signature` before sealing


def _blank_seal(record: dict[str, Any]) -> dict[str, Any]:
    blank = copy.copy(record)
    blank["envelope"] = {**record["envelope"], "hash": "", "signature": ""}
    return blank


def hash_of_record(schema: Any, record: dict[str, Any]) -> str:
    """The hash an event with this writer schema and record must carry (encodes it again)."""
    return chain_hash(record["envelope"]["prev_hash"], body_bytes(schema, _blank_seal(record)))


def _kind(schema: Any) -> str | None:
    """The primitive Avro type of a field (a logical type's underlying one); None if not primitive."""
    kind = schema.get("type") if isinstance(schema, dict) else schema
    return kind if isinstance(kind, str) and kind in _PRIMITIVE else None


def _steps(schema: Any) -> tuple[str, ...] | None:
    """The primitive types of the fields written before the envelope's `hash`; None if any is not."""
    steps: list[str] = []
    for field in schema["fields"]:
        if field["name"] == "envelope":
            break
        steps.append(_kind(field["type"]) or "")
    else:
        return None
    envelope = field["type"]
    if not isinstance(envelope, dict) or "fields" not in envelope:
        return None
    names = [f["name"] for f in envelope["fields"]]
    if names.count("hash") != 1 or names[names.index("hash") + 1 : names.index("hash") + 2] != ["signature"]:
        return None
    at = names.index("hash")
    steps.extend(_kind(f["type"]) or "" for f in envelope["fields"][:at])
    seal_kinds = [_kind(f["type"]) for f in envelope["fields"][at : at + 2]]
    return tuple(steps) if "" not in steps and seal_kinds == ["string", "string"] else None


def _string(text: str) -> bytes:
    """An Avro string: its UTF-8 length as a zigzag varint, then the bytes."""
    raw = text.encode()
    n, head = len(raw) << 1, bytearray()
    while n > 0x7F:
        head.append((n & 0x7F) | 0x80)
        n >>= 7
    head.append(n)
    return bytes(head) + raw


@dataclass(frozen=True)
class SealSpan:
    """Where in a body of one writer schema the `hash` and `signature` strings lie."""

    steps: tuple[str, ...]

    def start(self, body: bytes) -> int:
        """Offset of the `hash` string: after the fields written before it."""
        pos = 0
        for kind in self.steps:
            if kind in _VARIABLE:
                length, pos = long_at(body, pos)
                pos += length
            elif kind in _VARINT:
                pos = long_at(body, pos)[1]
            else:
                pos += _FIXED[kind]
        return pos

    def blanked(self, body: bytes) -> bytes:
        """`body` with `hash` and `signature` blank: the bytes its hash covers."""
        return self.blank_at(body, self.start(body))

    @staticmethod
    def blank_at(body: bytes, start: int) -> bytes:
        """`blanked`, its seal found at `start`: a body whose seal is blank already is itself."""
        if body[start : start + 2] == BLANK_SEAL:
            return body
        length, pos = long_at(body, start)
        length, pos = long_at(body, pos + length)
        return body[:start] + BLANK_SEAL + body[pos + length :]

    @staticmethod
    def spliced(blank: bytes, start: int, digest: str, signature: str) -> bytes:
        """A body with its seal blank at `start`, sealed: the same bytes as encoding the sealed record."""
        return blank[:start] + _string(digest) + _string(signature) + blank[start + len(BLANK_SEAL) :]


_SPANS: dict[bytes, SealSpan | None] = {}


def span_of(writer: WriterSchema) -> SealSpan | None:
    """The seal's span in bodies of `writer` (worked out once per schema); None: encode again."""
    if writer.fingerprint not in _SPANS:
        steps = _steps(writer.schema)
        _SPANS[writer.fingerprint] = SealSpan(steps) if steps is not None else None
    return _SPANS[writer.fingerprint]


def hash_of_body(writer: WriterSchema, body: bytes, prev_hash: str) -> str | None:
    """The hash a sealed event with this Avro body must carry, from its bytes as they are (no second
    encoding); None when the schema's seal cannot be found by skipping (use `hash_of_record`)."""
    span = span_of(writer)
    if span is None:
        return None
    try:
        return chain_hash(prev_hash, span.blanked(body))
    except (IndexError, Malformed):  # lengths running past the end: not bytes `decode_full` accepted
        return None


@dataclass(frozen=True)
class Sealed(Generic[E]):
    """A sealed event and its single-object encoding (what goes on the wire), made together."""

    event: E
    data: bytes


def seal_encoded(event: E, prev_hash: str, private: Ed25519PrivateKey) -> Sealed[E]:
    """`event` linked to `prev_hash`, hashed and signed with the current writer schema, and its
    bytes: the body is written once by the schema's compiled writer (a quarter of fastavro's time
    from a record, and no record to make), the seal found in it once, blanked (an event not sealed
    yet has it blank already) and the seal spliced in there. A schema without a compiled writer or
    a span is encoded from records, twice."""
    writer = registry().writer(type(event).__name__)
    linked = event if event.envelope.prev_hash == prev_hash else _enveloped(event, prev_hash=prev_hash)
    span, write = span_of(writer), body_writer(writer.name)
    if span is None or write is None:
        return _sealed_from_records(writer, linked, prev_hash, private)
    body = write(linked)
    start = span.start(body)
    blank = span.blank_at(body, start)
    digest = chain_hash(prev_hash, blank)
    signature = sign(private, digest)
    sealed = _enveloped(linked, hash=digest, signature=signature)
    return Sealed(sealed, MARKER + writer.fingerprint + span.spliced(blank, start, digest, signature))


def _sealed_from_records(
    writer: WriterSchema, linked: E, prev_hash: str, private: Ed25519PrivateKey
) -> Sealed[E]:
    blank = body_bytes(writer.schema, _blank_seal(to_record(linked)))
    digest = chain_hash(prev_hash, blank)
    sealed = _enveloped(linked, hash=digest, signature=sign(private, digest))
    return Sealed(sealed, MARKER + writer.fingerprint + body_bytes(writer.schema, to_record(sealed)))


def _enveloped(event: E, **fields: str) -> E:
    return event.model_copy(update={"envelope": event.envelope.model_copy(update=fields)})


def seal(event: E, prev_hash: str, private: Ed25519PrivateKey) -> E:
    """`event` linked to `prev_hash`, hashed and signed with the current writer schema."""
    return seal_encoded(event, prev_hash, private).event


@dataclass(frozen=True)
class SignatureClaim:
    """What is left of a seal check once the hash held and a key is registered: that the signature
    over the hash is the agency's. Checking it (Ed25519, the costly part) may wait, or run in a
    thread: libsodium (through cffi) releases the GIL while it verifies."""

    digest: str
    signature: str
    public_key: str
    agency: str

    def fault(self) -> tuple[str, str] | None:
        """None if the signature is the agency's; else (reason code, sentence)."""
        if verify_signature(self.digest, self.signature, self.public_key):
            return None
        return "bad_signature", f"the signature is not {self.agency}'s: forged or unsigned"


def claim_of(decoded: Decoded, public_key: str) -> tuple[str, str] | SignatureClaim:
    """The seal's hash and key checked: the fault (reason code, sentence), or the signature to check.

    The hash is taken over the body as received when `decoded` carries it (`decode_full`
    does), else over the record encoded again; public keys are parsed once (`crypto.public_key`)."""
    envelope = decoded.record["envelope"]
    expected = hash_of_body(decoded.writer, decoded.body, envelope["prev_hash"]) if decoded.body else None
    if expected is None:
        expected = hash_of_record(decoded.writer.schema, decoded.record)
    if envelope["hash"] != expected:
        return "bad_hash", "the event's hash does not match its content: it was altered or never hashed"
    if not public_key:
        return "unknown_key", f"no public key is registered for agency {envelope['agency']}"
    return SignatureClaim(expected, envelope["signature"], public_key, envelope["agency"])


def check_seal(decoded: Decoded, public_key: str) -> tuple[str, str] | None:
    """None if the event's hash and signature hold; else (reason code, sentence)."""
    claim = claim_of(decoded, public_key)
    return claim.fault() if isinstance(claim, SignatureClaim) else claim
