"""How a `ViewRow` is laid out in a copy's table, and how its leaf is recomputed from the columns.

Values are stored as `ViewRow.model_dump(mode="json")` renders them (lists and maps as
JSON text), so the canonical JSON rebuilt from the columns is byte-for-byte the one
`ViewRow.row_hash` hashes. The hash is recomputed from whatever the columns hold, even
text that no longer parses: a row edited by hand gets a different leaf, never an error.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Protocol

from pydantic import ValidationError

from services.core.copystore.port import StoreError
from services.core.views import ViewRow

# Column order of copy_rows as `encode`/`raw_row` see it; `bucket` and `leaf` follow it in the table.
COLUMNS = (
    "listing_id",
    "version",
    "status",
    "subject_ref",
    "measures",
    "fields",
    "effective_from",
    "expires_at",
    "exemptions",
)
JSON_COLUMNS = frozenset({"measures", "fields", "exemptions"})
ROW_COLUMNS = ", ".join(COLUMNS)


class Cursor(Protocol):
    """What both drivers' cursors offer and the copy's statements use."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...
    def executemany(self, sql: str, params: Any, /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


def hex_or_none(text: Any) -> int | None:
    """A stored leaf, or None for one missing or not hex (a row inserted by hand)."""
    try:
        return int(str(text), 16) if text is not None else None
    except ValueError:
        return None


def encode(row: ViewRow) -> tuple[Any, ...]:
    """The column values of `row`, in `COLUMNS` order."""
    return of_raw(row.model_dump(mode="json"))


def of_raw(raw: dict[str, Any]) -> tuple[Any, ...]:
    """The column values of a row as JSON-mode data (`model_dump(mode="json")`, `raw_row`)."""
    cells = list(_PICK(raw))
    for at in _JSON_AT:
        cells[at] = _dumps(cells[at])
    return tuple(cells)


def rendered(raw: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    """`(of_raw(raw), row_hash(raw))` of an intact row, its JSON rendered once: the canonical text
    the hash covers is the column texts filled into what `json.dumps(sort_keys=True)` writes around
    them (`_CANONICAL_ROW`), not rendered a second time. (A row with keys beyond the columns, which
    no model makes, is hashed the general way.)"""
    cells = of_raw(raw)
    if len(raw) != len(COLUMNS):
        return cells, row_hash(raw)
    texts = tuple([cells[at] if text else _scalar(cells[at]) for at, text in _SORTED_AT])
    return cells, hashlib.sha256((_CANONICAL_ROW % texts).encode()).hexdigest()


def raw_row(values: tuple[Any, ...]) -> dict[str, Any]:
    """The row as JSON-mode data, from column values in `COLUMNS` order; unparseable text stays text."""
    return {c: _loads(v) if c in JSON_COLUMNS else v for c, v in zip(COLUMNS, values, strict=True)}


def row_hash(raw: dict[str, Any]) -> str:
    """`ViewRow.row_hash` of an intact row, computed without validating it."""
    return hashlib.sha256("".join(_LENIENT_ENCODER(raw, 0)).encode()).hexdigest()


def decode(values: tuple[Any, ...]) -> ViewRow:
    """The `ViewRow` stored in these columns; a row that is no longer valid is a `StoreError`."""
    raw = raw_row(values)
    try:
        return ViewRow.model_validate(raw)
    except ValidationError as e:
        raise StoreError(f"row {raw['listing_id']!r} of the copy is not a valid view row: {e}") from e


def readable(values: tuple[Any, ...]) -> str | None:
    """Why these columns are not a valid view row, or None when they are."""
    try:
        decode(values)
    except StoreError as e:
        return str(e)
    return None


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_key = encode_basestring_ascii  # what the encoder writes for a str: a key, or a text column
_PICK = operator.itemgetter(*COLUMNS)
_JSON_AT = tuple(at for at, c in enumerate(COLUMNS) if c in JSON_COLUMNS)
# Where each key of an intact row's canonical JSON (keys sorted) finds its value among the columns,
# and whether that column holds JSON text already; the text around the values, with a %s for each.
_SORTED_AT = tuple((COLUMNS.index(c), c in JSON_COLUMNS) for c in sorted(COLUMNS))
_CANONICAL_ROW = "{" + ",".join(_key(c) + ":%s" for c in sorted(COLUMNS)) + "}"


def _encoder(default: Callable[[Any], Any]) -> Callable[[Any, int], list[str]]:
    """What `json.dumps(sort_keys=True, separators=(",", ":"), default=default)` runs, made once:
    `dumps` builds a new C encoder (and a circular-reference check) for every value, which cost
    more than the encoding of a row's three small JSON columns. (Values here are JSON data, read
    or dumped: never circular.)"""
    if c_make_encoder is not None:
        return c_make_encoder(None, default, _key, None, ":", ",", True, False, True)  # type: ignore[no-any-return]
    fallback = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=default)
    return lambda value, _: [fallback.encode(value)]


_C_ENCODER = _encoder(_CANONICAL.default)
# `row_hash`'s: a hand edit may leave in a column what JSON cannot hold (a blob); it is hashed as text.
_LENIENT_ENCODER = _encoder(str)


def _dumps(value: Any) -> str:
    return "".join(_C_ENCODER(value, 0))


def _scalar(value: Any) -> str:
    if type(value) is str:
        return _key(value)
    return int.__repr__(value) if type(value) is int else _CANONICAL.encode(value)


def _loads(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text
