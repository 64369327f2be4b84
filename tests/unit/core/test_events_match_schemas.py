"""Models and schemas agree field by field: `schemas/` is the truth, the models must not drift.

Each model is compared with its Avro record in the current version folder: the same
field names in the same order, the same optionality and defaults, and types that
carry the same values (int/long bounds, enum symbols, nested records by name).
Any difference fails with the record and field named.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from services.core.events import ALL_EVENTS, Envelope, Exemption, Objection
from services.core.serde import SCHEMA_ROOT
from tests.unit.core.avro_spec import INT32, INT64, SchemaSet, versions
from tests.unit.core.model_strategies import bounds, optional_inner, unwrap

MODELS: dict[str, type[BaseModel]] = {
    **ALL_EVENTS,
    "Envelope": Envelope,
    "Exemption": Exemption,
    "Objection": Objection,
}
CURRENT = SchemaSet.load(max(versions()))
TIMESTAMP = {"type": "long", "logicalType": "timestamp-micros"}


def type_problems(path: str, annotation: Any, metadata: list[Any], avro: Any) -> list[str]:
    """Every way the model's `annotation` differs from the Avro type `avro`, at `path`."""
    annotation, metadata = unwrap(annotation, metadata)
    avro = CURRENT.resolve(avro)
    inner = optional_inner(annotation)
    if inner is not None:
        if not (isinstance(avro, list) and len(avro) == 2 and avro[0] == "null"):
            return [f"{path}: the model is optional, the schema is {avro!r} (want ['null', T])"]
        return type_problems(path, inner, metadata, avro[1])
    if isinstance(avro, list):
        return [f"{path}: the schema is the union {avro!r}, the model is {annotation!r}"]
    return _non_union_problems(path, annotation, metadata, avro)


def _non_union_problems(path: str, annotation: Any, metadata: list[Any], avro: Any) -> list[str]:
    origin, args = get_origin(annotation), get_args(annotation)
    kind = avro if isinstance(avro, str) else avro["type"]
    if origin is list:
        if kind != "array":
            return [f"{path}: the model is a list, the schema is {kind}"]
        return type_problems(f"{path}[]", args[0], [], avro["items"])
    if origin is dict:
        if kind != "map" or args[0] is not str:
            return [f"{path}: the model is {annotation!r}, the schema is {kind}"]
        return type_problems(f"{path}{{}}", args[1], [], avro["values"])
    if origin is Literal:
        return _literal_problems(path, args, avro)
    return _scalar_problems(path, annotation, metadata, avro)


def _literal_problems(path: str, choices: tuple[Any, ...], avro: Any) -> list[str]:
    if avro == "string" and all(isinstance(c, str) for c in choices):
        return []
    if isinstance(avro, dict) and avro["type"] == "enum" and list(choices) == avro["symbols"]:
        return []
    return [f"{path}: the model allows {choices!r}, the schema is {avro!r}"]


def _scalar_problems(path: str, annotation: Any, metadata: list[Any], avro: Any) -> list[str]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        name = avro.get("name") if isinstance(avro, dict) else None
        if avro.get("type") != "record" or name != annotation.__name__:
            return [f"{path}: the model is record {annotation.__name__}, the schema is {avro!r}"]
        return []  # the nested record is compared on its own (MODELS lists it)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        symbols = [m.value for m in annotation]
        if isinstance(avro, dict) and avro["type"] == "enum" and avro["symbols"] == symbols:
            return []
        return [f"{path}: enum {annotation.__name__} has symbols {symbols}, the schema has {avro!r}"]
    if annotation is AwareDatetime:
        return [] if avro == TIMESTAMP else [f"{path}: an aware datetime needs {TIMESTAMP}, not {avro!r}"]
    if annotation is int:
        want = {"int": INT32, "long": INT64}.get(avro if isinstance(avro, str) else "")
        got = bounds(metadata)
        return [] if want == got else [f"{path}: int bounds {got} do not fit the schema's {avro!r}"]
    simple = {str: "string", bytes: "bytes", bool: "boolean"}
    if simple.get(annotation) == avro:
        return []
    return [f"{path}: the model is {annotation!r}, the schema is {avro!r}"]


def default_problems(path: str, field: FieldInfo, avro_field: dict[str, Any]) -> list[str]:
    """A default on one side only, or different defaults, is drift."""
    has_model = not field.is_required()
    has_avro = "default" in avro_field
    if has_model != has_avro:
        side = "model" if has_model else "schema"
        return [f"{path}: only the {side} has a default"]
    if not has_model:
        return []
    model_default = field.default.value if isinstance(field.default, Enum) else field.default
    if field.default is PydanticUndefined or model_default != avro_field["default"]:
        return [f"{path}: default {model_default!r} in the model, {avro_field['default']!r} in the schema"]
    return []


def record_problems(name: str, model: type[BaseModel]) -> list[str]:
    record = CURRENT.record(name)
    model_names = list(model.model_fields)
    avro_names = [f["name"] for f in record["fields"]]
    if model_names != avro_names:
        return [f"{name}: fields differ: model {model_names} vs schema {avro_names}"]
    problems = []
    for avro_field in record["fields"]:
        field = model.model_fields[avro_field["name"]]
        path = f"{name}.{avro_field['name']}"
        problems += type_problems(path, field.annotation, list(field.metadata), avro_field["type"])
        problems += default_problems(path, field, avro_field)
    return problems


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_its_avro_record_field_by_field(name: str) -> None:
    problems = record_problems(name, MODELS[name])
    assert not problems, "model and schema drifted:\n" + "\n".join(problems)


def test_every_record_of_the_current_schemas_has_a_model() -> None:
    assert set(CURRENT.records()) == set(MODELS)


def test_every_event_has_its_own_schema_file() -> None:
    """The serde loads events by file name; nested records (Objection) may live inline."""
    folder = SCHEMA_ROOT / f"v{max(versions())}"
    missing = [n for n in ALL_EVENTS if not (folder / f"accord.{n}.avsc").is_file()]
    assert not missing, f"no schema file in {folder} for {missing}"


class _Drifted(BaseModel):
    """A model that drifted in every way the comparison must catch."""

    envelope: Envelope
    view_agency: int
    op: list[str]
    status: str | None = None
    subject_ref: str = "x"


def test_the_comparison_names_each_drifted_field() -> None:
    """Guard the guard: a drifted model is reported field by field, not waved through."""
    record = CURRENT.record("ViewChanged")
    fields = {f["name"]: f for f in record["fields"]}
    problems = []
    for name, field in _Drifted.model_fields.items():
        path = f"ViewChanged.{name}"
        problems += type_problems(path, field.annotation, list(field.metadata), fields[name]["type"])
        problems += default_problems(path, field, fields[name])
    text = "\n".join(problems)
    for drifted in ("view_agency", "op", "status", "subject_ref"):
        assert f"ViewChanged.{drifted}" in text
    assert "ViewChanged.envelope" not in text
    assert record_problems("ViewChanged", _Drifted)[0].startswith("ViewChanged: fields differ")
