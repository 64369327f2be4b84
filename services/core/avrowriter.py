"""Avro bodies written straight from a contract model, by a writer made once per schema: `writer_for`.

fastavro's `schemaless_writer` walks the schema anew for every record, looking up each field's
type, logical type and writer by name, after `model_dump` made a dict of the model: a ledger
state took ~45 µs of CPU that way, a view change ~30, a third of the ledger's loop thread.
Here the walk is done once per schema, into the source of one Python function that reads the
model's attributes in the schema's order and appends their bytes (as `dataclasses` writes its
`__init__`); a record costs that function's straight-line run. The bytes are fastavro's: Avro's
binary encoding leaves no choice but a union's branch and how arrays and maps are cut into blocks,
and these are written as fastavro writes them (one block, then the empty one; a union's null
branch for None, its other branch else). `tests/unit/core/test_avrowriter.py` checks every event
type against fastavro. A schema with anything else (floats, booleans, fixed, a union of two
non-null types, a record that contains itself) gets no writer, and `serde.encode` keeps fastavro.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fastavro.types import Schema

from services.core.generated import Source

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
INTEGERS = ("int", "long")


def varint(n: int) -> bytes:
    """Avro's zig-zag varint of a long (fastavro too refuses one past 64 bits)."""
    if not -(2**63) <= n < 2**63:
        raise OverflowError(f"{n} does not fit an Avro long")
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


SMALL = tuple(varint(n) for n in range(1024))  # lengths, versions, counts: looked up, not computed


def long_of(n: int) -> bytes:
    return SMALL[n] if 0 <= n < 1024 else varint(n)


def micros(at: datetime | int) -> int:
    """fastavro's timestamp-micros: an aware time's microseconds since the epoch; an int as it is."""
    if not isinstance(at, datetime):
        return at
    if at.tzinfo is None:  # fastavro reads a naive time as local time; the contract has none
        raise ValueError(f"{at!r} has no time zone")
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@lru_cache(maxsize=4096)
def timestamp(at: datetime | int) -> bytes:
    """A timestamp-micros' bytes (a varint of a time takes eight rounds of Python's loop): a ledger
    state and its view changes repeat the listing's times, and a batch's records share one time."""
    return long_of(micros(at))


class Unsupported(Exception):
    """The schema has a construct this module does not write as fastavro does."""


def writer_for(schema: Schema) -> Callable[[Any], bytes] | None:
    """The body writer of a parsed record schema (fastavro's `load_schema`, with `__named_schemas`),
    reading the record's fields as attributes of a model; None if the schema has a construct it
    does not know (fastavro writes those)."""
    if not isinstance(schema, dict):
        return None
    source = _Source(dict(schema.get("__named_schemas", {})))
    try:
        source.value(schema, "v0", 1, ())
    except Unsupported:
        return None
    lines = ["def write(v0):", " out = []", " put = out.append", *source.lines, ' return b"".join(out)']
    scope: dict[str, Any] = {"SMALL": SMALL, "varint": varint, "timestamp": timestamp, **source.constants}
    exec(compile("\n".join(lines), f"<avro writer of {schema.get('name')}>", "exec"), scope)
    write: Callable[[Any], bytes] = scope["write"]
    return write


@dataclass
class _Source(Source):
    """Builds a writer's body."""

    def value(self, schema: Any, var: str, depth: int, within: tuple[str, ...]) -> None:
        """Lines that append the encoding of `var`, a value of `schema`; `within`: the records
        being written around it (one that contains itself would need a function of its own)."""
        if isinstance(schema, str) and schema in self.named:
            schema = self.named[schema]
        if isinstance(schema, list):
            return self.union(schema, var, depth, within)
        if isinstance(schema, dict):
            if schema.get("type") == "long" and schema.get("logicalType") == "timestamp-micros":
                return self.emit(depth, f"put(timestamp({var}))")
            if "logicalType" in schema:
                raise Unsupported(schema["logicalType"])
            composite = {"record": self.record, "array": self.array, "map": self.map, "enum": self.enum}
            if schema.get("type") in composite:
                return composite[schema["type"]](schema, var, depth, within)
            schema = schema.get("type")
        return self.primitive(schema, var, depth)

    def primitive(self, kind: Any, var: str, depth: int) -> None:
        if kind in INTEGERS:
            self.long(var, depth)
        elif kind == "string":
            self.emit(depth, f"b = {var}.encode()")
            self.sized("b", depth)
        elif kind == "bytes":
            self.emit(depth, f"b = bytes({var})")
            self.sized("b", depth)
        elif kind == "null":
            self.emit(depth, f"if {var} is not None: raise ValueError(f'{{{var}!r}} is not null')")
        else:
            raise Unsupported(kind)

    def long(self, expression: str, depth: int) -> None:
        self.emit(depth, f"n = {expression}")
        self.emit(depth, "put(SMALL[n] if 0 <= n < 1024 else varint(n))")

    def sized(self, var: str, depth: int) -> None:
        """The length of bytes `var`, then the bytes."""
        self.emit(depth, f"n = len({var})")
        self.emit(depth, f"put(SMALL[n] if n < 1024 else varint(n)); put({var})")

    def record(self, schema: dict[str, Any], var: str, depth: int, within: tuple[str, ...]) -> None:
        name = str(schema["name"])
        if name in within:
            raise Unsupported(f"{name} contains itself")
        for item in schema["fields"]:
            if not str(item["name"]).isidentifier():
                raise Unsupported(item["name"])
            inner = self.local()
            self.emit(depth, f"{inner} = {var}.{item['name']}")
            self.value(item["type"], inner, depth, (*within, name))

    def array(self, schema: dict[str, Any], var: str, depth: int, within: tuple[str, ...]) -> None:
        """One block of every item, then the empty block (fastavro's blocks)."""
        item = self.local()
        self.emit(depth, f"if {var}:")
        self.long(f"len({var})", depth + 1)
        self.emit(depth + 1, f"for {item} in {var}:")
        self.value(schema["items"], item, depth + 2, within)
        self.emit(depth, 'put(b"\\x00")')

    def map(self, schema: dict[str, Any], var: str, depth: int, within: tuple[str, ...]) -> None:
        """As an array, each item its key (a string) then its value, in the dict's order."""
        key, item = self.local(), self.local()
        self.emit(depth, f"if {var}:")
        self.long(f"len({var})", depth + 1)
        self.emit(depth + 1, f"for {key}, {item} in {var}.items():")
        self.primitive("string", key, depth + 2)
        self.value(schema["values"], item, depth + 2, within)
        self.emit(depth, 'put(b"\\x00")')

    def enum(self, schema: dict[str, Any], var: str, depth: int, within: tuple[str, ...]) -> None:
        """A symbol's index; an unknown symbol raises (`KeyError`), as fastavro does (`ValueError`)."""
        index = self.constant({symbol: long_of(i) for i, symbol in enumerate(schema["symbols"])})
        self.emit(depth, f"put({index}[{var}])")

    def union(self, branches: list[Any], var: str, depth: int, within: tuple[str, ...]) -> None:
        """Only null and one other type: fastavro picks null for None, and the other for anything else."""
        if len(branches) != 2 or branches.count("null") != 1:
            raise Unsupported(branches)
        null = branches.index("null")
        self.emit(depth, f"if {var} is None:")
        self.emit(depth + 1, f"put({long_of(null)!r})")
        self.emit(depth, "else:")
        self.emit(depth + 1, f"put({long_of(1 - null)!r})")
        self.value(branches[1 - null], var, depth + 1, within)
