"""The sink's cheap encodings give exactly what the general ones give: the acknowledgement's Avro
bytes (`encode_applied` vs `serde.encode`), its id (`_id` vs `uuid.uuid5`) and a row's columns and
hash rendered once (`columns.rendered` vs `of_raw` and `row_hash`), for any value the models allow."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from services.copies import messages
from services.core import serde
from services.core.copystore import columns
from services.core.events import CopyApplied, ViewChanged
from services.core.views import LIVE, ViewRow
from tests.unit.core.model_strategies import models


def test_the_acknowledgement_writer_is_bound_to_the_current_schema() -> None:
    assert messages._bound()


@settings(max_examples=300)
@given(models(CopyApplied))
def test_an_acknowledgement_is_written_as_serde_encodes_it(ack: CopyApplied) -> None:
    assert messages.encode_applied(ack) == serde.encode(ack)
    assert serde.decode(messages.encode_applied(ack)) == ack


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
