"""Hypothesis strategies for any contract model, derived from its type hints.

Derived, not hand-written, so a field added to a model is generated (and round-
tripped, sealed, compared) the moment it exists. Integers take the model's own
bounds: an unbounded int in a contract model is a bug the strategy refuses.
"""

from __future__ import annotations

import types
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Le
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from tests.unit.core.avro_spec import TEXT, TIMES


def bounds(metadata: list[Any]) -> tuple[int | None, int | None]:
    """(ge, le) from pydantic field metadata (top-level) or a nested Annotated's FieldInfo."""
    low: int | None = None
    high: int | None = None
    for item in metadata:
        inner = item.metadata if isinstance(item, FieldInfo) else [item]
        for constraint in inner:
            if isinstance(constraint, Ge):
                low = int(constraint.ge)  # type: ignore[call-overload]
            if isinstance(constraint, Le):
                high = int(constraint.le)  # type: ignore[call-overload]
    return low, high


def unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """Peel `Annotated[...]`, keeping its metadata."""
    while get_origin(annotation) is Annotated:
        base, *extra = get_args(annotation)
        annotation, metadata = base, [*metadata, *extra]
    return annotation, metadata


def optional_inner(annotation: Any) -> Any | None:
    """X for `X | None`, else None."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0]
    return None


def for_annotation(annotation: Any, metadata: list[Any] | None = None) -> st.SearchStrategy[Any]:
    annotation, meta = unwrap(annotation, metadata or [])
    inner = optional_inner(annotation)
    if inner is not None:
        return st.none() | for_annotation(inner, meta)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(for_annotation(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(TEXT, for_annotation(args[1]), max_size=3)
    return _scalar(annotation, meta)


def _scalar(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return models(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return st.sampled_from(list(annotation))
    if annotation in (AwareDatetime, datetime):
        return TIMES
    if annotation is int:
        low, high = bounds(metadata)
        if low is None or high is None:
            raise TypeError("an int in a contract model must carry Avro's int or long bounds")
        return st.integers(low, high)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: TEXT,
        bytes: st.binary(max_size=12),
        bool: st.booleans(),
    }
    return simple[annotation]


def field_strategy(field: FieldInfo) -> st.SearchStrategy[Any]:
    return for_annotation(field.annotation, list(field.metadata))


@cache
def models(cls: type[BaseModel]) -> st.SearchStrategy[Any]:
    """Any valid instance of `cls`."""
    return st.builds(cls, **{name: field_strategy(f) for name, f in cls.model_fields.items()})
