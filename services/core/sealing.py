"""Sealing events: the per-listing hash chain and the agency's signature over Avro bytes.

An event's hash covers its Avro body under its writer schema, with `hash` and
`signature` blank, prefixed by the previous event's hash: altering any byte of any
event, or removing one, breaks the chain from there on. The signature is the
emitting agency's Ed25519 signature of that hash. This is the one place where the
seal meets the wire format (`serde`, hence fastavro); the domain stays apart from it.
"""

from __future__ import annotations

import base64
import copy
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.core.crypto import chain_hash, verify_signature
from services.core.events import Event
from services.core.listing import Decision, refuse
from services.core.policy import Policy
from services.core.serde import Decoded, body_bytes, registry, to_record

E = TypeVar("E", bound=Event)


def _blank_seal(record: dict[str, Any]) -> dict[str, Any]:
    blank = copy.copy(record)
    blank["envelope"] = {**record["envelope"], "hash": "", "signature": ""}
    return blank


def hash_of_record(schema: Any, record: dict[str, Any]) -> str:
    """The hash an event with this writer schema and record must carry."""
    return chain_hash(record["envelope"]["prev_hash"], body_bytes(schema, _blank_seal(record)))


def seal(event: E, prev_hash: str, private: Ed25519PrivateKey) -> E:
    """`event` linked to `prev_hash`, hashed and signed with the current writer schema."""
    linked = event.model_copy(update={"envelope": event.envelope.model_copy(update={"prev_hash": prev_hash})})
    schema = registry().writer(type(event).__name__).schema
    digest = hash_of_record(schema, to_record(linked))
    signature = base64.b64encode(private.sign(bytes.fromhex(digest))).decode()
    envelope = linked.envelope.model_copy(update={"hash": digest, "signature": signature})
    return linked.model_copy(update={"envelope": envelope})


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


def seal_refusal(decoded: Decoded, policy: Policy) -> Decision | None:
    """The refusal of an event whose seal does not hold under its agency's registered key."""
    agency = policy.agency_by_id.get(decoded.event.envelope.agency)
    fault = check_seal(decoded, agency.public_key if agency else "")
    return refuse(*fault) if fault is not None else None
