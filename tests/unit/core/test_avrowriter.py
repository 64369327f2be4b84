"""The compiled Avro writers (`core.avrowriter`) write fastavro's bytes, for every event type.

`serde.encode` writes every body with them; fastavro (through `serde.body_bytes` of the model's
dump) is the reference here, over any valid model of each type (`model_strategies`), and over
values past the one-byte lengths and counts. Schemas with constructs the writer does not know get
no writer, and `serde.encode` still writes them, with fastavro.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core import serde
from services.core.avrowriter import timestamp, varint, writer_for
from services.core.events import ALL_EVENTS, Envelope, Event, ListingState, ViewChanged
from services.core.serde import body_bytes, decode, registry, to_record
from tests.unit.core.model_strategies import models

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
AT = datetime(2026, 5, 17, 8, 30, 1, 123456, tzinfo=UTC)


def fastavro_body(event: Event) -> bytes:
    return body_bytes(registry().writer(type(event).__name__).schema, to_record(event))


def fastavro_long(n: int) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema("long"), n)
    return out.getvalue()


def compiled(name: str) -> Any:
    write = writer_for(registry().writer(name).schema)
    assert write is not None, f"no compiled writer for {name}: serde.encode would fall back to fastavro"
    return write


@pytest.mark.parametrize("name", sorted(ALL_EVENTS))
@FAST
@given(data=st.data())
def test_every_event_type_is_written_as_fastavro_writes_it(name: str, data: st.DataObject) -> None:
    event = data.draw(models(ALL_EVENTS[name]))
    assert compiled(name)(event) == fastavro_body(event)
    assert serde.encode(event)[serde.HEADER_LEN :] == fastavro_body(event)


def envelope(**changes: Any) -> Envelope:
    fields = dict(event_id="e-1", listing_id="L-1", version=1, agency="court", occurred_at=AT, recorded_at=AT)
    return Envelope(**{**fields, **changes})


def test_long_strings_big_numbers_and_long_lists_take_multi_byte_lengths() -> None:
    """Lengths, counts and values past 1,023 are varints of several bytes; times before the epoch
    are negative; a time in another zone is the same instant."""
    east = timezone(timedelta(hours=8))
    change = ViewChanged(
        envelope=envelope(
            listing_id="名" * 700, version=2**31 - 1, request_id="r" * 5000, recorded_at=AT.astimezone(east)
        ),
        view_agency="civil-aviation",
        op="upsert",
        status="active",
        subject_ref="",
        measures=[f"m{i}" for i in range(1500)],
        fields={f"k{i}": "v" * (i % 3) for i in range(1100)},
        effective_from=datetime(1900, 1, 2, tzinfo=UTC),
        expires_at=datetime(2200, 1, 1, 23, 59, 59, 999999, tzinfo=east),
        exemptions=[],
        reason="é" * 1024,
    )
    assert compiled("ViewChanged")(change) == fastavro_body(change)
    assert decode(serde.encode(change)) == change


def test_the_ledgers_records_are_written_as_fastavro_writes_them_and_decode_back() -> None:
    """A listing state with exemptions and objections (a nested record in an array, a union in it)."""
    state = ListingState.model_validate(STATE)
    assert compiled("ListingState")(state) == fastavro_body(state)
    assert decode(serde.encode(state)) == state


STATE = {
            "envelope": envelope(prev_hash="p" * 64, hash="h" * 64, signature="s" * 88).model_dump(),
            "issuer": "court", "status": "disputed", "subject_ref": "s-1", "subject_kind": "person",
            "display_name": "Y* H**", "display_id": "420***12", "category": "judgment_default",
            "measures": ["flight_ban", "rail_ban"], "legal_basis": "art. 3", "severity": "serious",
            "case_ref": "c-1", "details": {"b": "2", "a": "1"}, "notice_served_at": AT,
            "effective_from": AT, "expires_at": AT + timedelta(days=365),
            "exemptions": [{"exemption_id": "x", "measure": "rail_ban", "starts_at": AT, "ends_at": AT,
                            "reason": "medical"}],
            "objections": [{"objection_id": "o", "kind": "objection", "due_at": AT, "outcome": None},
                           {"objection_id": "p", "kind": "repair", "due_at": AT, "outcome": "upheld"}],
            "end_reason": "", "event_ids": ["e-0", "e-1"],
}  # fmt: skip


@given(st.integers(-(2**63), 2**63 - 1))
def test_varint_is_avros_zigzag_long(n: int) -> None:
    assert varint(n) == fastavro_long(n)


def test_a_long_past_64_bits_is_refused_as_fastavro_refuses_it() -> None:
    with pytest.raises(OverflowError):
        varint(2**63)
    with pytest.raises(OverflowError):
        fastavro_long(2**63)


def test_a_time_without_zone_is_refused_not_read_as_local_time() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        timestamp(datetime(2026, 1, 1))


def test_a_wrong_value_raises_instead_of_writing_something() -> None:
    """A model changed without validation (`model_copy`) to carry a wrong type is not written."""
    state = ListingState.model_validate(STATE)
    for change in (
        {"subject_ref": 7},
        {"measures": [None]},
        {"expires_at": "soon"},
        {"details": {"a": b"1"}},
    ):
        with pytest.raises((AttributeError, TypeError)):
            compiled("ListingState")(state.model_copy(update=change))


@pytest.mark.parametrize(
    "field",
    [
        {"name": "f", "type": "double"},
        {"name": "f", "type": "boolean"},
        {"name": "f", "type": ["string", "long"]},
        {"name": "f", "type": {"type": "fixed", "name": "F", "size": 2}},
        {"name": "f", "type": {"type": "int", "logicalType": "date"}},
        {"name": "f", "type": ["null", "R"]},  # the record inside itself
    ],
)
def test_constructs_it_does_not_know_get_no_writer(field: dict[str, Any]) -> None:
    schema = fastavro.parse_schema({"type": "record", "name": "R", "fields": [field]})
    assert writer_for(schema) is None


def test_every_current_schema_has_a_compiled_writer() -> None:
    """Else `serde.encode` silently falls back to fastavro, four times slower."""
    for name in ALL_EVENTS:
        compiled(name)
