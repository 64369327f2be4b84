"""Avro bodies read into fastavro's dicts by a reader made once per schema: `reader_for`.

fastavro's `schemaless_reader` walks the writer schema anew for every record: it parses the schema
again, then dispatches each field on its type's name through a chain of comparisons and reads it
through a file object, a byte at a time for every varint. Here the walk is done once per schema,
into the source of one Python function that reads the body's bytes in the schema's order (as
`avrowriter` writes them); a body costs that function's straight-line run: a 417-byte view change
~40 → ~30 µs of CPU on a loaded machine, strings and ints about three times faster, times no faster
(making the `datetime`, which fastavro pays too, is most of a time's cost; a cache of them would
flatter benchmarks whose records share their times and miss on real ones). It returns what fastavro
returns: the same dict, the same keys in the same order, the same values and types (timestamps as
aware UTC datetimes, dates, enums as their symbols, bytes as bytes), and where the body ended, so
that trailing bytes are still refused. `tests/unit/core/test_avroreader.py` checks every schema
version, and garbled and random bytes, against fastavro.

Bad bytes raise `Malformed`, saying what is wrong and in which field at which byte: truncation, a
varint past 64 bits, a negative length, bad UTF-8, a union branch or enum symbol out of range, a
time out of range. Where fastavro reads some bad bytes as something anyway (a negative union or enum
index picks from the end of the list; a varint past 64 bits wraps), this reader refuses them. The
fast function does not track the field it is in; when it fails, the same source compiled with a
field marker (`at = ...`) before every value reads the body again to say where.

A schema with anything else (booleans, floats, fixed, other logical types, a record inside itself, an
array of values that take no bytes) gets no reader, and `serde` keeps fastavro for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastavro.types import Schema

from services.core.generated import Source

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAYS_SHIFT = date(1970, 1, 1).toordinal()  # fastavro's date: days since the epoch, as an ordinal
ZIGZAG = tuple((b >> 1) ^ -(b & 1) for b in range(128))  # a one-byte varint's value, looked up
LENGTH = tuple(b >> 1 if b < 128 and not b & 1 else -1 for b in range(256))  # -1: not a one-byte length
STOPS, EIGHT = 0x8080808080808080, 0x0080808080808080  # continuation bits; those of an 8-byte varint
PAYLOAD = 0x7F7F7F7F7F7F7F7F

Reader = Callable[[bytes], tuple[dict[str, Any], int]]


class Malformed(ValueError):
    """The bytes are not a body of the schema: what is wrong, and where."""


def long_at(data: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at `pos` and where the next value starts; one past 64 bits is refused
    (fastavro wraps it around)."""
    n = shift = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise Malformed("a varint longer than 10 bytes")
    if n >> 64:
        raise Malformed("a varint past 64 bits")
    return (n >> 1) ^ -(n & 1), pos


def length_at(data: bytes, pos: int) -> tuple[int, int]:
    """A length of more than one byte (or a negative one, refused) at `pos`."""
    n, pos = long_at(data, pos)
    if n < 0:
        raise Malformed(f"a negative length ({n})")
    return n, pos


def micros_at(data: bytes, pos: int) -> tuple[datetime, int]:
    """fastavro's timestamp-micros at `pos` (an aware UTC time) and where the next value starts.
    Every time from 1979 to 3111 takes eight bytes: their seven-bit groups are put together by
    masks and shifts, not a byte at a time. Eight bytes past the end read as zeros; the reader
    refuses a body it read past (`pos > size`)."""
    x = int.from_bytes(data[pos : pos + 8], "little")
    if x & STOPS != EIGHT:
        n, pos = long_at(data, pos)
        return EPOCH + timedelta(0, 0, n), pos
    x &= PAYLOAD
    x = (x & 0x007F007F007F007F) | ((x & 0x7F007F007F007F00) >> 1)
    x = (x & 0x00003FFF00003FFF) | ((x & 0x3FFF00003FFF0000) >> 2)
    x = (x & 0x0FFFFFFF) | ((x & 0x0FFFFFFF00000000) >> 4)
    return EPOCH + timedelta(0, 0, (x >> 1) ^ -(x & 1)), pos + 8


def millis(n: int) -> datetime:
    """fastavro's timestamp-millis."""
    return EPOCH + timedelta(microseconds=n * 1000)


def day(n: int) -> date:
    """fastavro's date."""
    return date.fromordinal(n + DAYS_SHIFT)


LOGICAL = {("long", "timestamp-millis"): "millis", ("int", "date"): "day"}
HELPERS = {
    "millis": millis,
    "day": day,
    "micros_at": micros_at,
    "long_at": long_at,
    "length_at": length_at,
    "Z": ZIGZAG,
    "L": LENGTH,
    "Malformed": Malformed,
}


class Unsupported(Exception):
    """The schema has a construct this module does not read as fastavro does."""


def reader_for(schema: Schema) -> Reader | None:
    """The body reader of a parsed record schema (fastavro's `load_schema`, with `__named_schemas`):
    bytes to (the record fastavro reads, where it ends); None if the schema has a construct it does
    not know (fastavro reads those)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    try:
        explain = _compile(schema, trace=True, explain=None)
        return _compile(schema, trace=False, explain=explain)
    except Unsupported:
        return None


def _compile(schema: dict[str, Any], trace: bool, explain: Reader | None) -> Reader:
    """The reader's function; with `trace`, one that names the field it is in when it fails."""
    source = _Source(dict(schema.get("__named_schemas", {})), trace=trace)
    source.value(schema, "v0", 2, (), str(schema.get("name")))
    lines = [
        "def read(data):",
        " size = len(data)",
        " pos = 0",
        " at, start = '', 0",
        " try:",
        *source.lines,
        "  if pos > size:",  # a string or time read past the end, as slices do without a word
        "   raise Malformed(f'truncated: read to byte {pos} of {size}')",
        " except Exception as e:",
        "  raise Malformed(f'{reason(e)} in {at}, at byte {start} of {size}') from e"
        if trace
        else "  explain(data)",
        "  raise",
        " return v0, pos",
    ]
    scope = {**HELPERS, **source.constants, "explain": explain, "reason": _reason}
    exec(compile("\n".join(lines), f"<avro reader of {schema.get('name')}>", "exec"), scope)
    read: Reader = scope["read"]
    return read


def _reason(e: Exception) -> str:
    """What went wrong, in words."""
    if isinstance(e, IndexError):
        return "truncated: the body ends inside a value"
    if isinstance(e, UnicodeDecodeError):
        return f"bad UTF-8 ({e.reason} at character {e.start})"
    if isinstance(e, OverflowError | ValueError) and not isinstance(e, Malformed):
        return f"a time out of range ({e})"
    return str(e)


@dataclass
class _Source(Source):
    """Builds a reader's body."""

    trace: bool = False  # a marker before every value: the field a failure is in

    def value(self, schema: Any, var: str, depth: int, within: tuple[str, ...], path: str) -> None:
        """Lines that read a value of `schema` into `var`; `within`: the records being read around
        it (one that contains itself would need a function of its own); `path`: the field's name."""
        if isinstance(schema, str) and schema in self.named:
            schema = self.named[schema]
        if isinstance(schema, list):
            return self.union(schema, var, depth, within, path)
        if isinstance(schema, dict):
            if "logicalType" in schema:
                return self.logical(schema, var, depth, path)
            composite = {"record": self.record, "array": self.array, "map": self.map}
            if schema.get("type") in composite:
                return composite[schema["type"]](schema, var, depth, within, path)
            if schema.get("type") == "enum":
                return self.enum(schema, var, depth, path)
            schema = schema.get("type")
        return self.primitive(schema, var, depth, path)

    def mark(self, depth: int, path: str) -> None:
        if self.trace:
            self.emit(depth, f"at, start = {path!r}, pos")

    def primitive(self, kind: Any, var: str, depth: int, path: str) -> None:
        if kind in ("int", "long"):
            self.mark(depth, path)
            self.long(var, depth)
        elif kind in ("string", "bytes"):
            self.mark(depth, path)
            self.sized(var, depth, ".decode()" if kind == "string" else "")
        elif kind == "null":
            self.emit(depth, f"{var} = None")
        else:
            raise Unsupported(kind)

    def long(self, var: str, depth: int) -> None:
        """A varint: one byte looked up, longer ones read by `long_at`."""
        self.emit(depth, "b = data[pos]")
        self.emit(depth, "if b < 128:")
        self.emit(depth + 1, f"{var} = Z[b]; pos += 1")
        self.emit(depth, "else:")
        self.emit(depth + 1, f"{var}, pos = long_at(data, pos)")

    def sized(self, var: str, depth: int, convert: str) -> None:
        """A length, then that many bytes (decoded, for a string). A slice past the end is short,
        not an error: the traced reader checks the length first, the fast one where the body ended."""
        self.emit(depth, "n = L[data[pos]]")
        self.emit(depth, "if n < 0:")
        self.emit(depth + 1, "n, pos = length_at(data, pos)")
        self.emit(depth, "else:")
        self.emit(depth + 1, "pos += 1")
        if self.trace:
            self.emit(depth, "if n > size - pos:")
            self.emit(
                depth + 1, "raise Malformed(f'truncated: a length of {n} with {size - pos} bytes left')"
            )
        self.emit(depth, f"{var} = data[pos:pos + n]{convert}; pos += n")

    def logical(self, schema: dict[str, Any], var: str, depth: int, path: str) -> None:
        kind = (schema.get("type"), schema.get("logicalType"))
        if kind == ("long", "timestamp-micros"):
            self.mark(depth, path)
            self.emit(depth, f"{var}, pos = micros_at(data, pos)")
            if self.trace:
                self.emit(depth, "if pos > size:")
                self.emit(depth + 1, "raise Malformed('truncated: the body ends inside a value')")
            return None
        if kind not in LOGICAL:
            raise Unsupported(schema["logicalType"])
        self.mark(depth, path)
        self.long("n", depth)
        self.emit(depth, f"{var} = {LOGICAL[kind]}(n)")

    def record(
        self, schema: dict[str, Any], var: str, depth: int, within: tuple[str, ...], path: str
    ) -> None:
        """Each field into a local, then one dict of them in the schema's order."""
        name = str(schema["name"])
        if name in within or not schema["fields"]:
            raise Unsupported(f"{name} contains itself or nothing")
        items = []
        for item in schema["fields"]:
            inner = self.local()
            self.value(item["type"], inner, depth, (*within, name), f"{path}.{item['name']}")
            items.append(f"{item['name']!r}: {inner}")
        self.emit(depth, f"{var} = {{{', '.join(items)}}}")

    def blocks(self, count: str, depth: int) -> None:
        """A block's count: a negative one is followed by the block's size in bytes (unused, as by
        fastavro); each item takes at least a byte, so a count past the bytes left is refused."""
        self.emit(depth, f"if {count} < 0:")
        self.emit(depth + 1, f"{count} = -{count}")
        self.long("n", depth + 1)
        self.emit(depth, f"if {count} > size - pos:")
        self.emit(
            depth + 1, f"raise Malformed(f'a block of {{{count}}} items with {{size - pos}} bytes left')"
        )

    def array(self, schema: dict[str, Any], var: str, depth: int, within: tuple[str, ...], path: str) -> None:
        count, item = self.local(), self.local()
        self.emit(depth, f"{var} = []")
        self.mark(depth, path)
        self.long(count, depth)
        self.emit(depth, f"while {count}:")
        self.blocks(count, depth + 1)
        self.emit(depth + 1, f"for _ in range({count}):")
        self.value(self.taking_bytes(schema["items"]), item, depth + 2, within, f"{path}[]")
        self.emit(depth + 2, f"{var}.append({item})")
        self.mark(depth + 1, path)
        self.long(count, depth + 1)

    def map(self, schema: dict[str, Any], var: str, depth: int, within: tuple[str, ...], path: str) -> None:
        """As an array, each item its key (a string) then its value; a repeated key keeps its last
        value, in its first place (fastavro's dict)."""
        count, key, item = self.local(), self.local(), self.local()
        self.emit(depth, f"{var} = {{}}")
        self.mark(depth, path)
        self.long(count, depth)
        self.emit(depth, f"while {count}:")
        self.blocks(count, depth + 1)
        self.emit(depth + 1, f"for _ in range({count}):")
        self.primitive("string", key, depth + 2, f"{path} key")
        self.value(schema["values"], item, depth + 2, within, f"{path}[]")
        self.emit(depth + 2, f"{var}[{key}] = {item}")
        self.mark(depth + 1, path)
        self.long(count, depth + 1)

    def taking_bytes(self, schema: Any) -> Any:
        """`schema`, if each of its values takes a byte at least (the bound on a block's count)."""
        if not self.takes_bytes(schema):
            raise Unsupported(f"an array of values that take no bytes: {schema}")
        return schema

    def takes_bytes(self, schema: Any) -> bool:
        resolved = self.named.get(schema, schema) if isinstance(schema, str) else schema
        if isinstance(resolved, dict) and resolved.get("type") == "record":
            return any(self.takes_bytes(item["type"]) for item in resolved["fields"])
        kind = resolved.get("type") if isinstance(resolved, dict) else resolved
        return kind != "null"

    def enum(self, schema: dict[str, Any], var: str, depth: int, path: str) -> None:
        """A symbol's index; one out of range is refused (fastavro reads a negative one from the end)."""
        symbols = self.constant(tuple(schema["symbols"]))
        self.mark(depth, path)
        self.long("n", depth)
        self.emit(depth, f"if not 0 <= n < {len(schema['symbols'])}:")
        self.emit(depth + 1, f"raise Malformed(f'symbol {{n}} of an enum of {len(schema['symbols'])}')")
        self.emit(depth, f"{var} = {symbols}[n]")

    def union(self, branches: list[Any], var: str, depth: int, within: tuple[str, ...], path: str) -> None:
        """The branch's index, then its value; an index out of range is refused (fastavro reads a
        negative one from the end)."""
        if not branches:
            raise Unsupported("a union of nothing")
        self.mark(depth, path)
        self.long("n", depth)
        for index, branch in enumerate(branches):
            self.emit(depth, f"{'if' if index == 0 else 'elif'} n == {index}:")
            self.value(branch, var, depth + 1, within, path)
        self.emit(depth, "else:")
        self.emit(depth + 1, f"raise Malformed(f'branch {{n}} of a union of {len(branches)}')")
