"""Single-object encoding: round trips, the header, golden bytes, and clear errors on bad bytes.

Golden files pin the wire format: any change to how an event is written fails here
first. To re-record them after an intended change (a new schema version), run
`ACCORD_REGENERATE_GOLDEN=1 pytest tests/unit/core/test_core_serde.py` and commit the files.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.errors import ContractError
from services.core.events import ALL_EVENTS, Event
from services.core.serde import (
    HEADER_LEN,
    MARKER,
    body_bytes,
    decode,
    decode_full,
    encode,
    registry,
    to_record,
)
from tests.support.golden.samples import SAMPLES, as_written_by, encode_with
from tests.unit.core.avro_spec import SchemaSet, canonical_form, crc64_avro, single_object_header, versions
from tests.unit.core.model_strategies import models
from tests.unit.core.test_avroreader import ON_PURPOSE

GOLDEN = Path(__file__).resolve().parents[2] / "support" / "golden"
CURRENT = max(versions())
REGENERATE = os.environ.get("ACCORD_REGENERATE_GOLDEN") == "1"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WHERE = ("listings.court", 2, 4711)


def any_event() -> st.SearchStrategy[Event]:
    return st.one_of([models(cls) for cls in ALL_EVENTS.values()])


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL_EVENTS))
@FAST
@given(data=st.data())
def test_every_event_type_round_trips(name: str, data: st.DataObject) -> None:
    event = data.draw(models(ALL_EVENTS[name]))
    decoded = decode(encode(event), *WHERE)
    assert decoded == event
    assert type(decoded) is type(event)


def test_samples_cover_every_event_type() -> None:
    assert set(SAMPLES) == set(ALL_EVENTS)
    assert all(type(e).__name__ == name for name, e in SAMPLES.items())


# --- the header --------------------------------------------------------------------------------


def test_crc64_avro_matches_the_published_vectors() -> None:
    """Vectors from Avro's own test suites: fingerprint of `"int"` and its single-object header."""
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F
    assert crc64_avro(b'"string"') == 0x8F014872634503C7
    assert single_object_header('"int"') == bytes.fromhex("c3018f5c393f1ad57572")


@pytest.mark.parametrize("version", versions())
def test_fingerprints_are_crc64_avro_of_the_parsing_canonical_form(version: int) -> None:
    schemas = SchemaSet.load(version)
    for name, writer in registry().versions[version].items():
        canonical = canonical_form(schemas, schemas.record(name))
        assert writer.fingerprint == single_object_header(canonical)[2:], f"v{version} {name}"


@pytest.mark.parametrize("name", sorted(ALL_EVENTS))
def test_encoded_message_starts_with_marker_and_current_fingerprint(name: str) -> None:
    schemas = SchemaSet.load(CURRENT)
    data = encode(SAMPLES[name])
    assert data[:HEADER_LEN] == single_object_header(canonical_form(schemas, schemas.record(name)))
    assert decode_full(data).writer.version == CURRENT


def test_fingerprints_are_unique_within_a_version() -> None:
    for version, writers in registry().versions.items():
        prints = [w.fingerprint for w in writers.values()]
        assert len(set(prints)) == len(prints), f"v{version} has two records with one fingerprint"


# --- golden bytes ---------------------------------------------------------------------------------


def golden_path(version: int, name: str) -> Path:
    return GOLDEN / f"v{version}" / f"{name}.bin"


def _regenerate(version: int, name: str) -> None:
    path = golden_path(version, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_with(version, SAMPLES[name]))


@pytest.mark.parametrize("name", sorted(ALL_EVENTS))
def test_encoding_equals_the_golden_bytes(name: str) -> None:
    if REGENERATE:
        for version in versions():
            if name in registry().versions[version]:
                _regenerate(version, name)
    path = golden_path(CURRENT, name)
    assert path.is_file(), f"no golden file {path}: run with ACCORD_REGENERATE_GOLDEN=1 and commit it"
    assert encode(SAMPLES[name]) == path.read_bytes(), f"the wire format of {name} changed"


@pytest.mark.parametrize(
    ("version", "name"),
    [(v, n) for v in versions() for n in sorted(ALL_EVENTS) if n in registry().versions[v]],
)
def test_golden_bytes_of_every_version_still_decode(version: int, name: str) -> None:
    """Messages written years ago stay readable: old goldens decode to today's models."""
    path = golden_path(version, name)
    assert path.is_file(), f"no golden file {path}: run with ACCORD_REGENERATE_GOLDEN=1 and commit it"
    assert decode(path.read_bytes(), *WHERE) == as_written_by(version, SAMPLES[name])


# --- bad bytes ----------------------------------------------------------------------------------


def _assert_names_where(error: pytest.ExceptionInfo[ContractError]) -> None:
    assert "listings.court" in str(error.value)
    assert "[2]" in str(error.value)
    assert "4711" in str(error.value)


GOOD = encode(SAMPLES["ListingIssued"])
BAD_BYTES = {
    "no value": None,
    "empty": b"",
    "no marker": b'{"listing_id": "x"}',
    "marker of another format": b"\x00\x01" + GOOD[2:],
    "truncated header": GOOD[:6],
    "unknown fingerprint": MARKER + bytes(8) + GOOD[HEADER_LEN:],
    "header only": GOOD[:HEADER_LEN],
    "truncated body": GOOD[:-3],
    "trailing bytes": GOOD + b"\x00",
    "another type's body": GOOD[:HEADER_LEN] + encode(SAMPLES["ListingExpired"])[HEADER_LEN:],
}


@pytest.mark.parametrize("case", sorted(BAD_BYTES))
def test_bad_bytes_raise_contract_error_naming_topic_partition_offset(case: str) -> None:
    with pytest.raises(ContractError) as error:
        decode(BAD_BYTES[case], *WHERE)
    _assert_names_where(error)


def test_error_messages_say_what_is_wrong() -> None:
    expectations = {
        "no marker": "marker",
        "truncated header": "truncated",
        "unknown fingerprint": "unknown schema fingerprint 0000000000000000",
        "trailing bytes": "1 trailing bytes",
        "truncated body": "undecodable accord.ListingIssued",
    }
    for case, phrase in expectations.items():
        with pytest.raises(ContractError, match=re.escape(phrase)):
            decode(BAD_BYTES[case], *WHERE)


def test_a_body_that_decodes_but_breaks_the_model_is_a_contract_error() -> None:
    """Avro accepts any string for `op`; the model allows only upsert/delete."""
    record = to_record(SAMPLES["ViewChanged"]) | {"op": "merge"}
    writer = registry().writer("ViewChanged")
    with pytest.raises(ContractError, match=r"undecodable accord\.ViewChanged"):
        decode(MARKER + writer.fingerprint + body_bytes(writer.schema, record), *WHERE)


@FAST
@given(event=any_event(), data=st.data())
def test_a_corrupted_byte_gives_an_event_or_a_contract_error_never_a_crash(
    event: Event, data: st.DataObject
) -> None:
    message = bytearray(encode(event))
    message[data.draw(st.integers(HEADER_LEN, len(message) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = decode(bytes(message), *WHERE)
    except ContractError as error:
        assert "listings.court[2]@4711" in str(error)
    else:
        assert isinstance(decoded, Event)


@FAST
@given(body=st.binary(max_size=64), name=st.sampled_from(sorted(ALL_EVENTS)))
def test_random_bodies_never_raise_anything_but_contract_error(body: bytes, name: str) -> None:
    header = registry().writer(name).fingerprint
    try:
        decode(MARKER + header + body, *WHERE)
    except ContractError as error:
        assert "listings.court[2]@4711" in str(error)


def _plain_decode(data: bytes) -> Event:
    """The decode as first written: fastavro with the registry's schemas, then `model_validate`."""
    writer = registry().by_fingerprint[data[2:HEADER_LEN]]
    stream = io.BytesIO(data[HEADER_LEN:])
    raw = fastavro.schemaless_reader(stream, writer.schema, None)
    if stream.tell() != len(data) - HEADER_LEN:
        raise ValueError("trailing bytes")
    reader = registry().writer(writer.name)
    if reader is not writer:
        raw = fastavro.schemaless_reader(io.BytesIO(data[HEADER_LEN:]), writer.schema, reader.schema)
    return ALL_EVENTS[writer.name].model_validate(raw)


@FAST
@given(event=any_event(), data=st.data())
def test_the_decode_gives_the_plain_paths_event_or_refuses_what_it_refuses(
    event: Event, data: st.DataObject
) -> None:
    """The per-schema plans, the compiled readers and the validator called directly change nothing:
    on garbled bytes (up to three bytes changed, or cut short) the decode and the plain fastavro +
    model_validate path give equal events, or both refuse, or the decode refuses on purpose what
    fastavro reads anyway (a negative union or enum index, a varint past 64 bits)."""
    kept = sorted(v for v, schemas in registry().versions.items() if type(event).__name__ in schemas)
    message = bytearray(encode_with(data.draw(st.sampled_from(kept)), event))
    for _ in range(data.draw(st.integers(0, 3))):
        message[data.draw(st.integers(HEADER_LEN, len(message) - 1))] = data.draw(st.integers(0, 255))
    garbled = bytes(message[: data.draw(st.integers(HEADER_LEN, len(message)))])
    try:
        expected: Event | None = _plain_decode(garbled)
    except Exception:  # fastavro and pydantic raise many types for bad bytes
        expected = None
    try:
        got: Event | None = decode(garbled, *WHERE)
    except ContractError as refusal:
        got = None
        if expected is not None:  # bytes fastavro reads anyway: see `core.avroreader`
            assert any(reason in str(refusal) for reason in ON_PURPOSE), refusal
            return
    assert got == expected
