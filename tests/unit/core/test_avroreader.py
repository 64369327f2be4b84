"""The compiled Avro readers (`core.avroreader`) read what fastavro reads, for every event type.

fastavro's `schemaless_reader` is the reference: over any record of every schema version
(`avro_spec.values`, the spec's own value ranges), over hand-made bodies fastavro's writer never
makes (arrays and maps in several blocks, a negative count with its byte size), and over garbled
or random bytes, where the compiled reader gives fastavro's dict or refuses, never another dict.
It refuses on purpose some bytes fastavro reads anyway (a negative union or enum index, which
fastavro takes from the end of the list; a varint past 64 bits, which it wraps around).
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.avroreader import Malformed, reader_for
from services.core.avrowriter import varint
from services.core.errors import ContractError
from services.core.events import ALL_EVENTS
from services.core.serde import MARKER, decode, registry
from tests.unit.core.avro_spec import SchemaSet, values, versions

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EACH = settings(FAST, max_examples=30)  # per schema version: 26 of them
SCHEMAS = [(v, name) for v in versions() for name in sorted(registry().versions[v])]
ON_PURPOSE = ("branch -", "symbol -", "varint")  # refusals of bytes fastavro reads anyway


@cache
def spec(version: int) -> SchemaSet:
    return SchemaSet.load(version)


def schema_of(version: int, name: str) -> Any:
    return registry().versions[version][name].schema


def compiled(schema: Any) -> Any:
    read = reader_for(schema)
    assert read is not None, "no compiled reader: serde would fall back to fastavro"
    return read


def written(schema: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def fastavro_read(schema: Any, body: bytes) -> tuple[Any, int] | None:
    """fastavro's record and where it stopped; None if it raises."""
    stream = io.BytesIO(body)
    try:
        return fastavro.schemaless_reader(stream, schema, None), stream.tell()
    except Exception:  # fastavro raises many types for bad bytes
        return None


def typed(value: Any) -> Any:
    """`value` with the type of every part beside it (and a time's zone): `1 == 1.0 == True`, and
    a naive time is not equal to an aware one only by accident."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, datetime):
        return ("datetime", value, value.tzinfo)
    return (type(value).__name__, value)


def assert_reads_as_fastavro(schema: Any, body: bytes) -> None:
    expected = fastavro_read(schema, body)
    assert expected is not None
    record, end = compiled(schema)(body)
    assert typed(record) == typed(expected[0])
    assert end == expected[1] == len(body)


@pytest.mark.parametrize(("version", "name"), SCHEMAS)
@EACH
@given(data=st.data())
def test_every_schema_version_is_read_as_fastavro_reads_it(
    version: int, name: str, data: st.DataObject
) -> None:
    schemas = spec(version)
    record = data.draw(values(schemas, schemas.record(name)))
    assert_reads_as_fastavro(schema_of(version, name), written(schema_of(version, name), record))


def test_every_schema_version_has_a_compiled_reader() -> None:
    """Else `serde.decode_full` silently falls back to fastavro."""
    for version, name in SCHEMAS:
        compiled(schema_of(version, name))


CURRENT = max(versions())
AT = datetime(2026, 5, 17, 8, 30, 1, 123456, tzinfo=UTC)


def envelope(**changes: Any) -> dict[str, Any]:
    fields = dict(event_id="e", listing_id="L-1", version=1, agency="court", occurred_at=AT, recorded_at=AT,
                  prev_hash="", hash="", signature="", request_id=None)  # fmt: skip
    return {**fields, **changes}


def applied(**changes: Any) -> dict[str, Any]:
    fields = dict(envelope=envelope(), copy_agency="railway", op="upsert", partition=0, offset=0,
                  row_hash="h", applied_at=AT)  # fmt: skip
    return {**fields, **changes}


EDGES = [
    applied(offset=-(2**63), partition=2**31 - 1),
    applied(offset=2**63 - 1, partition=-(2**31)),
    applied(offset=63, partition=-64),  # the last one-byte varints
    applied(offset=64, partition=-65),  # the first two-byte ones
    applied(envelope=envelope(request_id="r-1", event_id="名字é🙂" * 40, hash="h" * 64, signature="s" * 88)),
    applied(envelope=envelope(request_id="")),
    applied(applied_at=datetime(1, 1, 1, tzinfo=UTC)),
    applied(applied_at=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    applied(applied_at=datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),  # a one-byte time
    applied(applied_at=datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    applied(applied_at=datetime(1973, 1, 1, tzinfo=UTC)),  # a seven-byte time
    applied(applied_at=datetime(3200, 1, 1, tzinfo=UTC)),  # a nine-byte time
    applied(applied_at=datetime(1900, 1, 1, tzinfo=UTC)),  # an eight-byte time before the epoch
]


@pytest.mark.parametrize("record", EDGES)
def test_extremes_multi_byte_text_and_both_union_branches_are_read_as_fastavro_reads_them(
    record: dict[str, Any],
) -> None:
    schema = schema_of(CURRENT, "CopyApplied")
    assert_reads_as_fastavro(schema, written(schema, record))


def test_empty_and_long_arrays_and_maps_are_read_as_fastavro_reads_them() -> None:
    schema = schema_of(CURRENT, "CopyDigest")
    for buckets, positions in (([], {}), ([f"b{i}" for i in range(1500)], {f"{i}": i for i in range(1100)})):
        record = dict(envelope=envelope(), copy_agency="railway", rows=len(buckets), root="r",
                      buckets=buckets, positions=positions, taken_at=AT)  # fmt: skip
        assert_reads_as_fastavro(schema, written(schema, record))


# A record of an array of strings and a map of longs, bodies made by hand.
BLOCKS = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Blocks",
        "fields": [
            {"name": "items", "type": {"type": "array", "items": "string"}},
            {"name": "counts", "type": {"type": "map", "values": "long"}},
        ],
    }
)


def string(text: str) -> bytes:
    return varint(len(text.encode())) + text.encode()


@pytest.mark.parametrize(
    "body",
    [
        varint(2) + string("a") + string("b") + varint(1) + string("c") + b"\x00" + b"\x00",
        # a negative count, then the block's size in bytes, then its items (fastavro never writes it)
        varint(-2) + varint(4) + string("a") + string("b") + varint(1) + string("c") + b"\x00"
        + varint(-1) + varint(3) + string("k") + varint(-5) + varint(1) + string("k") + varint(7) + b"\x00",
        b"\x00" + varint(-1) + varint(0) + string("") + varint(0) + b"\x00",
        varint(1) + b"\x00" + b"\x00" + b"\x00",
    ],
)  # fmt: skip
def test_arrays_and_maps_in_several_blocks_are_read_as_fastavro_reads_them(body: bytes) -> None:
    assert_reads_as_fastavro(BLOCKS, body)


@FAST
@given(version_name=st.sampled_from(SCHEMAS), data=st.data())
def test_garbled_bodies_are_read_as_fastavro_reads_them_or_refused(
    version_name: tuple[int, str], data: st.DataObject
) -> None:
    """Up to four bytes changed and the body perhaps cut short: fastavro's record and end, or a
    `Malformed`; where fastavro read something, the refusal is one made on purpose."""
    version, name = version_name
    schemas, schema = spec(version), schema_of(version, name)
    body = bytearray(written(schema, data.draw(values(schemas, schemas.record(name)))))
    for _ in range(data.draw(st.integers(0, 4))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    assert_same_or_refused(schema, bytes(body[: data.draw(st.integers(0, len(body)))]))


@FAST
@given(body=st.binary(max_size=80), version_name=st.sampled_from(SCHEMAS))
def test_random_bytes_are_read_as_fastavro_reads_them_or_refused(
    body: bytes, version_name: tuple[int, str]
) -> None:
    assert_same_or_refused(schema_of(*version_name), body)


@FAST
@given(body=st.binary(max_size=40))
def test_random_blocks_are_read_as_fastavro_reads_them_or_refused(body: bytes) -> None:
    assert_same_or_refused(BLOCKS, body)


def assert_same_or_refused(schema: Any, body: bytes) -> None:
    expected = fastavro_read(schema, body)
    try:
        got = compiled(schema)(body)
    except Malformed as refusal:
        assert expected is None or any(reason in str(refusal) for reason in ON_PURPOSE), refusal
    else:
        assert expected is not None, f"fastavro refuses what the compiled reader read: {got}"
        assert typed(got[0]) == typed(expected[0])
        assert got[1] == expected[1]


def message(name: str, body: bytes) -> bytes:
    return MARKER + registry().writer(name).fingerprint + body


REVOKED = written(
    schema_of(CURRENT, "ListingRevoked"),
    dict(envelope=envelope(), expected_version=1, reason="other", note="n"),
)
PAYLOAD = b"\x02" + b"\x08" + string("n")  # expected_version 1, reason "other" (symbol 4), note "n"
START = len(REVOKED) - len(PAYLOAD)  # where the payload starts, after the envelope


@pytest.mark.parametrize(
    ("body", "phrases"),
    [
        (REVOKED[:-1], ["truncated", "ListingRevoked.note", f"byte {len(REVOKED) - 2}"]),
        (REVOKED[:9], ["truncated", "envelope.agency"]),
        (b"\xff" * 11, ["varint longer than 10 bytes", "envelope.event_id", "byte 0"]),
        (b"\xff" * 9 + b"\x7f", ["varint past 64 bits", "envelope.event_id"]),
        (b"\x03" + REVOKED[1:], ["negative length (-2)", "envelope.event_id"]),
        (b"\x02\xff" + REVOKED[2:], ["bad UTF-8", "envelope.event_id", "byte 0"]),
        (
            REVOKED[: START - 1] + b"\x04" + REVOKED[START:],
            ["branch 2 of a union of 2", "envelope.request_id"],
        ),
        (
            REVOKED[: START - 1] + b"\x01" + REVOKED[START:],
            ["branch -1 of a union of 2", "envelope.request_id"],
        ),
        (REVOKED[: START + 1] + b"\x0a" + REVOKED[START + 2 :], ["symbol 5 of an enum of 5", "reason"]),
        (REVOKED[: START + 1] + b"\x01" + REVOKED[START + 2 :], ["symbol -1 of an enum of 5", "reason"]),
    ],
)
def test_bad_bytes_are_a_contract_error_saying_what_and_where(body: bytes, phrases: list[str]) -> None:
    assert REVOKED.endswith(PAYLOAD)
    with pytest.raises(ContractError) as error:
        decode(message("ListingRevoked", body), "listings.court", 2, 4711)
    for phrase in ["listings.court[2]@4711", "undecodable accord.ListingRevoked", *phrases]:
        assert phrase in str(error.value)


def test_a_time_out_of_range_is_a_contract_error() -> None:
    body = bytearray(written(schema_of(CURRENT, "ListingExpired"), dict(envelope=envelope(), expired_at=AT)))
    far = varint(2**62)
    with pytest.raises(ContractError, match=r"time out of range .* in accord\.ListingExpired\.expired_at"):
        decode(message("ListingExpired", bytes(body[:-8]) + far))
    assert fastavro_read(schema_of(CURRENT, "ListingExpired"), bytes(body[:-8]) + far) is None


def test_a_count_past_the_bytes_left_is_refused_before_it_is_counted_out() -> None:
    """fastavro would count to 2**62 reading nothing more (it fails at the end of the bytes)."""
    with pytest.raises(Malformed, match="a block of 4611686018427387904 items"):
        compiled(BLOCKS)(varint(2**62))


def test_each_decode_gives_a_fresh_record() -> None:
    """`Decoded.record` belongs to its caller: two reads share no list or dict."""
    schema = schema_of(CURRENT, "CopyDigest")
    body = written(schema, dict(envelope=envelope(), copy_agency="a", rows=1, root="r", buckets=["b"],
                                positions={"0": 1}, taken_at=AT))  # fmt: skip
    first, second = compiled(schema)(body)[0], compiled(schema)(body)[0]
    assert first == second
    assert first["buckets"] is not second["buckets"] and first["positions"] is not second["positions"]


LOGICAL = fastavro.parse_schema(
    {
        "type": "record",
        "name": "Logical",
        "fields": [
            {"name": "millis", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["red", "green"]}},
            {"name": "raw", "type": ["null", "bytes", "string", "long", "Colour"]},
        ],
    }
)


@FAST
@given(
    millis=st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31), timezones=st.just(UTC)),
    day=st.dates(date(1, 1, 1), date(9999, 12, 31)),
    colour=st.sampled_from(["red", "green"]),
    raw=st.none() | st.binary(max_size=5) | st.text(max_size=5) | st.integers(-(2**63), 2**63 - 1),
)
def test_other_logical_types_enums_and_wider_unions_are_read_as_fastavro_reads_them(
    millis: datetime, day: date, colour: str, raw: Any
) -> None:
    millis = millis.replace(microsecond=millis.microsecond // 1000 * 1000)
    assert_reads_as_fastavro(LOGICAL, written(LOGICAL, dict(millis=millis, day=day, colour=colour, raw=raw)))


@pytest.mark.parametrize(
    "field",
    [
        {"name": "f", "type": "double"},
        {"name": "f", "type": "float"},
        {"name": "f", "type": "boolean"},
        {"name": "f", "type": {"type": "fixed", "name": "F", "size": 2}},
        {"name": "f", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "f", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
        {"name": "f", "type": ["null", "R"]},  # the record inside itself
        {"name": "f", "type": {"type": "array", "items": "null"}},  # items that take no bytes
    ],
)
def test_constructs_it_does_not_know_get_no_reader(field: dict[str, Any]) -> None:
    schema = fastavro.parse_schema({"type": "record", "name": "R", "fields": [field]})
    assert reader_for(schema) is None


def test_serde_reads_with_the_compiled_reader_and_refuses_trailing_bytes() -> None:
    body = written(schema_of(CURRENT, "ListingExpired"), dict(envelope=envelope(), expired_at=AT))
    event = decode(message("ListingExpired", body))
    assert event.envelope.occurred_at == AT and event.expired_at == AT  # type: ignore[attr-defined]
    with pytest.raises(ContractError, match="1 trailing bytes"):
        decode(message("ListingExpired", body + b"\x00"))


def test_every_event_type_is_in_the_registry() -> None:
    assert {name for _, name in SCHEMAS} == set(ALL_EVENTS)
