"""Sealing with one encoding, and checking a seal from the bytes as received.

`seal_encoded` writes an event's body once and splices the seal into it; its bytes
must be exactly what encoding the sealed event gives. `check_seal` hashes the body
as received; its hash must be the one encoding the record again gives, for every
event type and schema version, and bytes that differ from what was signed (even
ones that decode to the same record) must not pass.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.crypto import Keystore, public_key, public_key_of, verify_signature
from services.core.events import ALL_EVENTS, Event
from services.core.sealing import (
    SealSpan,
    check_seal,
    hash_of_body,
    hash_of_record,
    seal,
    seal_encoded,
    span_of,
)
from services.core.serde import HEADER_LEN, Decoded, WriterSchema, decode_full, encode, registry
from tests.support.golden.samples import SAMPLES, encode_with
from tests.unit.core.model_strategies import models


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    store = Keystore(tmp_path_factory.mktemp("keys"))
    store.create(["court"])
    return store


def _court(keystore: Keystore) -> str:
    return public_key_of(keystore.private("court"))


@pytest.mark.parametrize("name", sorted(ALL_EVENTS))
def test_sealed_bytes_are_the_encoding_of_the_sealed_event(name: str, keystore: Keystore) -> None:
    sealed = seal_encoded(SAMPLES[name], "p" * 64, keystore.private("court"))
    assert sealed.data == encode(sealed.event)
    assert sealed.event == seal(SAMPLES[name], "p" * 64, keystore.private("court"))
    assert sealed.event.envelope.prev_hash == "p" * 64 and len(sealed.event.envelope.hash) == 64


@pytest.mark.parametrize("name", sorted(ALL_EVENTS))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_event_seals_to_its_own_encoding(name: str, data: st.DataObject, keystore: Keystore) -> None:
    event = data.draw(models(ALL_EVENTS[name]))
    sealed = seal_encoded(event, event.envelope.prev_hash, keystore.private("court"))
    assert sealed.data == encode(sealed.event)
    decoded = decode_full(sealed.data)
    prev_hash = decoded.record["envelope"]["prev_hash"]
    expected = hash_of_record(decoded.writer.schema, decoded.record)
    assert hash_of_body(decoded.writer, decoded.body, prev_hash) == expected


@pytest.mark.parametrize("version", sorted(registry().versions))
@pytest.mark.parametrize("name", ["ListingIssued", "ListingRevoked", "ObjectionFiled"])
def test_the_hash_of_the_received_bytes_is_the_hash_of_the_record(name: str, version: int) -> None:
    """Under every schema version kept, as a message written with it arrives."""
    event: Event = SAMPLES[name]
    if version == 1:
        event = event.model_copy(update={"envelope": event.envelope.model_copy(update={"request_id": None})})
    decoded = decode_full(encode_with(version, event))
    assert decoded.writer.version == version and decoded.body
    expected = hash_of_record(decoded.writer.schema, decoded.record)
    assert hash_of_body(decoded.writer, decoded.body, decoded.record["envelope"]["prev_hash"]) == expected


def test_a_decoded_event_without_its_bytes_is_checked_by_encoding_it_again(keystore: Keystore) -> None:
    decoded = decode_full(encode(seal(SAMPLES["ListingIssued"], "", keystore.private("court"))))
    bare = Decoded(decoded.event, decoded.writer, decoded.record)
    assert check_seal(bare, _court(keystore)) is None


def test_bytes_that_decode_alike_but_differ_from_the_signed_ones_are_refused(keystore: Keystore) -> None:
    """An overlong varint (the version, 1, written in two bytes) decodes to the same record; the
    signature covers the bytes the agency wrote, so these are not those."""
    event = SAMPLES["ListingRevoked"].model_copy(
        update={"envelope": SAMPLES["ListingRevoked"].envelope.model_copy(update={"version": 1})}
    )
    data = seal_encoded(event, "", keystore.private("court")).data
    genuine = decode_full(data)
    assert check_seal(genuine, _court(keystore)) is None
    span = span_of(genuine.writer)
    assert span is not None and span.steps[2] == "int"  # event_id, listing_id, then the version
    at = SealSpan(span.steps[:2]).start(genuine.body)
    assert genuine.body[at] == 0x02  # zigzag 1
    overlong = data[: HEADER_LEN + at] + b"\x82\x00" + data[HEADER_LEN + at + 1 :]
    twin = decode_full(overlong)
    assert twin.record == genuine.record
    fault = check_seal(twin, _court(keystore))
    assert fault is not None and fault[0] == "bad_hash"


def test_a_schema_whose_seal_cannot_be_skipped_to_is_hashed_by_encoding_again() -> None:
    """A field before the seal that is not primitive (here a union): no span, the caller encodes."""
    current = registry().writer("ListingRevoked")
    assert isinstance(current.schema, dict)  # a record's parsed schema
    schema = dict(current.schema)
    envelope = dict(schema["fields"][0]["type"])
    envelope["fields"] = [{"name": "extra", "type": ["null", "string"]}, *envelope["fields"]]
    schema["fields"] = [{**schema["fields"][0], "type": envelope}, *schema["fields"][1:]]
    odd = WriterSchema("ListingRevoked", 99, schema, b"\xff" * 8)
    assert span_of(odd) is None
    assert hash_of_body(odd, b"\x00" * 40, "") is None
    assert span_of(current) is not None


def test_public_keys_are_parsed_once_and_bad_ones_refused(keystore: Keystore) -> None:
    text = _court(keystore)
    assert public_key(text) is public_key(text)
    with pytest.raises(ValueError):
        public_key("not a key")
    assert verify_signature("00" * 32, "", "not a key") is False
