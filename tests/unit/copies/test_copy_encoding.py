"""The sink's cheap encodings give exactly what the general ones give: the acknowledgement's Avro
bytes (`Acknowledgements`, no model built, vs `serde.encode` of the `holding` model), its id (`_id`
vs `uuid.uuid5`), a row's JSON data (`row_data` vs `ViewRow.from_change(...).model_dump`) and its
columns and hash rendered once (`columns.rendered` vs `of_raw` and `row_hash`), for any value the
models allow."""

from __future__ import annotations

import hashlib
import json
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from services.copies import messages
from services.core import serde
from services.core.cloudevent import Encoded
from services.core.copystore import columns
from services.core.events import CopyApplied, ViewChanged
from services.core.views import LIVE, ViewRow, row_data
from tests.unit.core.model_strategies import models


def test_the_acknowledgement_writer_is_bound_to_the_current_schema() -> None:
    assert messages._bound()


def _holding_of(ack: CopyApplied) -> tuple[str, int, str, int, int]:
    """The fields a copy's acknowledgement varies by, of any acknowledgement (a delete holds no row)."""
    row_hash = ack.row_hash if ack.op == "upsert" and ack.row_hash else ""
    return ack.envelope.listing_id, ack.envelope.version, row_hash, ack.partition, ack.offset


@settings(max_examples=300)
@given(models(CopyApplied))
def test_an_acknowledgement_is_written_as_serde_encodes_its_model(ack: CopyApplied) -> None:
    agency, at, held = ack.copy_agency, ack.applied_at, _holding_of(ack)
    written = messages.Acknowledgements(agency, at).of(*held)
    model = messages.holding(*held, agency, at)
    assert written.value == serde.encode(model)
    assert serde.decode(written.value) == model
    assert written == Encoded.of(model, written.value)  # what its headers say: the model's own


@settings(max_examples=50)
@given(models(CopyApplied))
def test_an_acknowledgement_is_the_same_when_its_writer_is_not_bound(ack: CopyApplied) -> None:
    """The fallback a schema change would select: `serde.encode` of the model."""
    acks = messages.Acknowledgements(ack.copy_agency, ack.applied_at)
    direct = acks.of(*_holding_of(ack))
    acks.bound = False
    assert acks.of(*_holding_of(ack)) == direct


@given(st.lists(st.one_of(st.text(), st.integers(-(2**40), 2**40)), max_size=5))
def test_an_acknowledgement_id_is_the_uuid5_of_its_parts(parts: list[object]) -> None:
    expected = uuid.uuid5(messages.COPY_NAMESPACE, ":".join(str(p) for p in parts))
    assert messages._id(*parts) == str(expected)


def _row(change: ViewChanged, status: str) -> ViewRow:
    return ViewRow.from_change(change.model_copy(update={"status": status}))


ROWS = st.builds(_row, models(ViewChanged), st.sampled_from(LIVE))


@settings(max_examples=300)
@given(ROWS)
def test_a_row_rendered_once_has_the_columns_and_hash_of_rendering_it_twice(row: ViewRow) -> None:
    raw = row.model_dump(mode="json")
    assert columns.rendered(raw) == (columns.of_raw(raw), columns.row_hash(raw))
    assert columns.rendered(raw)[1] == row.row_hash()


LIVE_CHANGES = st.builds(
    lambda change, status: change.model_copy(update={"status": status}),
    models(ViewChanged),
    st.sampled_from(LIVE),
)


@settings(max_examples=300)
@given(LIVE_CHANGES)
def test_a_rows_data_is_what_its_model_dumps(change: ViewChanged) -> None:
    assert row_data(change) == ViewRow.from_change(change).model_dump(mode="json")


JSON_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(columns.COLUMNS), JSON_DATA))
def test_a_row_s_hash_is_that_of_its_canonical_json_whatever_its_columns_hold(raw: dict[str, object]) -> None:
    """What verification hashes a row read back by, edited by hand into anything (a blob: as text)."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    assert columns.row_hash(raw) == hashlib.sha256(canonical.encode()).hexdigest()
