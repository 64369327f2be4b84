"""The Avro specification, re-implemented from its text for the tests: no fastavro here.

Reads `.avsc` files as plain JSON, resolves named types, computes the Parsing
Canonical Form and the CRC-64-AVRO fingerprint as the spec defines them, and
generates random values for any schema (hypothesis). The serde's own answers
(fastavro's) are checked against these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from services.core.serde import SCHEMA_ROOT

PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
CRC64_EMPTY = 0xC15D213AA4D7A795


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (CRC64_EMPTY & -(fp & 1))
        table.append(fp)
    return table


_TABLE = _crc_table()


def crc64_avro(data: bytes) -> int:
    """The spec's 64-bit Rabin fingerprint ("Schema Fingerprints", CRC-64-AVRO)."""
    fp = CRC64_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def single_object_header(canonical: str) -> bytes:
    """Marker C3 01, then the fingerprint of the canonical form, little-endian."""
    return b"\xc3\x01" + crc64_avro(canonical.encode()).to_bytes(8, "little")


def versions() -> list[int]:
    return sorted(int(p.name.removeprefix("v")) for p in SCHEMA_ROOT.glob("v*") if p.is_dir())


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


@dataclass
class SchemaSet:
    """Every named type defined in one version folder, by full name, as raw JSON."""

    names: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, version: int) -> SchemaSet:
        found: dict[str, dict[str, Any]] = {}
        for path in sorted((SCHEMA_ROOT / f"v{version}").glob("*.avsc")):
            _collect(json.loads(path.read_text()), "", found)
        return cls(found)

    def record(self, name: str) -> dict[str, Any]:
        return self.names[f"accord.{name}"]

    def resolve(self, schema: Any, namespace: str = "accord") -> Any:
        """A reference to a named type replaced by its definition; anything else as is."""
        if isinstance(schema, str) and schema not in PRIMITIVES:
            return self.names[_fullname(schema, namespace)]
        return schema

    def records(self) -> list[str]:
        return sorted(n.removeprefix("accord.") for n, s in self.names.items() if s["type"] == "record")


def _collect(schema: Any, namespace: str, found: dict[str, dict[str, Any]]) -> None:
    """Register every named type defined anywhere inside `schema`."""
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, namespace, found)
    if not isinstance(schema, dict):
        return
    if schema["type"] in ("record", "enum", "fixed"):
        name = _fullname(schema["name"], schema.get("namespace", namespace))
        found[name] = schema
        namespace = name.rpartition(".")[0]
    for field in schema.get("fields", []):
        _collect(field["type"], namespace, found)
    for key in ("items", "values"):
        if key in schema:
            _collect(schema[key], namespace, found)


def canonical_form(schemas: SchemaSet, schema: Any) -> str:
    """Parsing Canonical Form: full names, only the attributes that matter, no whitespace."""
    return json.dumps(_canonical(schemas, schema, "accord", set()), separators=(",", ":"))


def _canonical(schemas: SchemaSet, schema: Any, namespace: str, seen: set[str]) -> Any:
    if isinstance(schema, list):
        return [_canonical(schemas, s, namespace, seen) for s in schema]
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        name = _fullname(schema, namespace)
        if name in seen:
            return name
        return _canonical(schemas, schemas.names[name], namespace, seen)
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        name = _fullname(schema["name"], schema.get("namespace", namespace))
        if name in seen:
            return name
        seen.add(name)
        return _named(schemas, schema, name, seen)
    if kind == "array":
        return {"type": "array", "items": _canonical(schemas, schema["items"], namespace, seen)}
    if kind == "map":
        return {"type": "map", "values": _canonical(schemas, schema["values"], namespace, seen)}
    return _canonical(schemas, kind, namespace, seen)  # a primitive with attributes (logical types)


def _named(schemas: SchemaSet, schema: dict[str, Any], name: str, seen: set[str]) -> dict[str, Any]:
    namespace = name.rpartition(".")[0]
    out: dict[str, Any] = {"name": name, "type": schema["type"]}
    if schema["type"] == "record":
        out["fields"] = [
            {"name": f["name"], "type": _canonical(schemas, f["type"], namespace, seen)}
            for f in schema["fields"]
        ]
    if schema["type"] == "enum":
        out["symbols"] = schema["symbols"]
    if schema["type"] == "fixed":
        out["size"] = schema["size"]
    return out


# --- random values of any schema ----------------------------------------------------------

TIMEZONES = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-9, minutes=-30))])
TIMES = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=TIMEZONES)
TEXT = st.text(max_size=12)


def values(schemas: SchemaSet, schema: Any, namespace: str = "accord") -> st.SearchStrategy[Any]:
    """Any value `schema` can carry, as fastavro writes it (datetimes for timestamp-micros)."""
    schema = schemas.resolve(schema, namespace)
    if isinstance(schema, list):
        return st.one_of([values(schemas, s, namespace) for s in schema])
    if isinstance(schema, str):
        return _primitive(schema)
    kind = schema["type"]
    if kind == "record":
        inner = _fullname(schema["name"], schema.get("namespace", namespace)).rpartition(".")[0]
        return st.fixed_dictionaries({f["name"]: values(schemas, f["type"], inner) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(values(schemas, schema["items"], namespace), max_size=3)
    if kind == "map":
        return st.dictionaries(TEXT, values(schemas, schema["values"], namespace), max_size=3)
    if schema.get("logicalType") == "timestamp-micros":
        return TIMES
    return _primitive(kind)


def _primitive(kind: str) -> st.SearchStrategy[Any]:
    strategies: dict[str, st.SearchStrategy[Any]] = {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(*INT32),
        "long": st.integers(*INT64),
        "string": TEXT,
        "bytes": st.binary(max_size=12),
    }
    return strategies[kind]
