"""Avro single-object encoding of every event: marker, CRC-64-AVRO fingerprint, body.

Each message names its writer schema, so a reader resolves any version kept in
`schemas/avro/v*/` to the current one. Decoding failures are `ContractError`s that
say which topic, partition and offset held the bad bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import fastavro
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form
from fastavro.types import Schema

from services.core.avroreader import Reader, reader_for
from services.core.avrowriter import writer_for
from services.core.errors import ContractError
from services.core.events import ALL_EVENTS, Event
from services.core.resources import data_path

MARKER = b"\xc3\x01"
HEADER_LEN = len(MARKER) + 8
SCHEMA_ROOT = data_path("schemas", "avro")


@dataclass(frozen=True)
class WriterSchema:
    """One version of one record schema, as parsed by fastavro."""

    name: str
    version: int
    schema: Schema
    fingerprint: bytes


def _version_number(folder: Path) -> int:
    return int(folder.name.removeprefix("v"))


def _load_version(folder: Path) -> dict[str, WriterSchema]:
    loaded = {}
    for name in ALL_EVENTS:
        path = folder / f"accord.{name}.avsc"
        if not path.exists():
            continue
        schema = load_schema(str(path))
        print_ = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        loaded[name] = WriterSchema(name, _version_number(folder), schema, print_)
    return loaded


class SchemaRegistry:
    """Every schema version in `schemas/avro/`, by fingerprint, and the current one by name."""

    def __init__(self, root: Path = SCHEMA_ROOT) -> None:
        folders = sorted(root.glob("v*"), key=_version_number)
        if not folders:
            raise ContractError(f"no schema versions under {root}")
        self.versions: dict[int, dict[str, WriterSchema]] = {
            _version_number(folder): _load_version(folder) for folder in folders
        }
        self.current: dict[str, WriterSchema] = self.versions[max(self.versions)]
        self.by_fingerprint: dict[bytes, WriterSchema] = {
            ws.fingerprint: ws for version in self.versions.values() for ws in version.values()
        }

    def writer(self, name: str) -> WriterSchema:
        try:
            return self.current[name]
        except KeyError as e:
            raise ContractError(f"no schema named accord.{name}") from e


@cache
def registry() -> SchemaRegistry:
    """The registry of the repository's schemas, loaded once per process."""
    return SchemaRegistry()


def to_record(event: Event) -> dict[str, Any]:
    """The plain dict fastavro writes for `event`."""
    return event.model_dump(mode="python")


def body_bytes(schema: Schema, record: dict[str, Any]) -> bytes:
    """Schemaless Avro body of `record`: also the canonical bytes that hashes and signatures cover."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def encode(event: Event) -> bytes:
    """Single-object encoding of `event` with the current schema of its type: fastavro's bytes,
    written from the model by the schema's compiled writer (`avrowriter`), where it has one."""
    writer = registry().writer(type(event).__name__)
    write = body_writer(writer.name)
    body = write(event) if write is not None else body_bytes(writer.schema, to_record(event))
    return MARKER + writer.fingerprint + body


@cache
def body_writer(name: str) -> Callable[[Event], bytes] | None:
    """The compiled writer of the current schema named `name` (None: fastavro writes it)."""
    return writer_for(registry().writer(name).schema)


class Decoded(NamedTuple):
    """A decoded message: the event, plus its writer schema, raw record and Avro body (the bytes
    after the single-object header, as received) for verification. A tuple, not a dataclass: a
    replay makes one per message, and a frozen dataclass's `__init__` costs a microsecond."""

    event: Event
    writer: WriterSchema
    record: dict[str, Any]
    body: bytes = b""


@dataclass(frozen=True)
class Plan:
    """How to decode bodies of one writer schema: the reader schema to resolve to (None when the
    writer is the current version), the model that validates the record, and the compiled reader
    of the writer schema (`avroreader`; None: fastavro reads it). The record as written is always
    read (audit verifies seals over it); resolution to the reader schema stays fastavro's."""

    writer: WriterSchema
    reader: Schema | None
    model: Callable[[dict[str, Any]], Any]
    read: Reader | None


@cache
def _plans() -> dict[bytes, Plan]:
    """Each known fingerprint's plan, worked out once per process instead of once per message."""
    known = registry()
    plans = {}
    for print_, writer in known.by_fingerprint.items():
        reader = known.writer(writer.name)
        validator = ALL_EVENTS[writer.name].__pydantic_validator__
        resolve = None if reader is writer else reader.schema
        plans[print_] = Plan(writer, resolve, validator.validate_python, reader_for(writer.schema))
    return plans


def _where(topic: str, partition: int, offset: int) -> str:
    return f"{topic}[{partition}]@{offset}"


def decode_full(data: bytes | None, topic: str = "?", partition: int = -1, offset: int = -1) -> Decoded:
    """Decode one message, resolving its writer schema to the current reader schema.

    Every record is validated by its pydantic model (`validate_python`, what `model_validate`
    calls): Avro types the values, the model still checks bounds, literals, enums, time zones
    and unknown fields. Where the bytes are is spelt only when something is wrong."""
    if data is None or (plan := _plans().get(data[2:HEADER_LEN])) is None or data[:2] != MARKER:
        raise ContractError(_refusal(data, _where(topic, partition, offset)))
    body = data[HEADER_LEN:]
    try:
        raw, end = _raw(body, plan)
        if end != len(body):
            raise ContractError(f"{_where(topic, partition, offset)}: {len(body) - end} trailing bytes")
        record = raw if plan.reader is None else _read(body, plan)
        event = plan.model(record)
    except ContractError:
        raise
    except Exception as e:  # fastavro and pydantic raise many types for bad bytes
        where = _where(topic, partition, offset)
        raise ContractError(f"{where}: undecodable accord.{plan.writer.name}: {e}") from e
    return Decoded(event, plan.writer, raw, body)


def _raw(body: bytes, plan: Plan) -> tuple[dict[str, Any], int]:
    """The record of the body under its writer schema, as fastavro reads it, and where it ended."""
    if plan.read is not None:
        return plan.read(body)
    stream = io.BytesIO(body)
    raw = fastavro.schemaless_reader(stream, plan.writer.schema, None)
    assert isinstance(raw, dict)  # every accord schema is a record
    return raw, stream.tell()


def _refusal(data: bytes | None, where: str) -> str:
    """Why bytes without a known single-object header are not a message of the contract."""
    if data is None or not data.startswith(MARKER):
        return f"{where}: not an Avro single-object message (missing C3 01 marker)"
    if len(data) < HEADER_LEN:
        return f"{where}: truncated single-object header ({len(data)} of {HEADER_LEN} bytes)"
    return f"{where}: unknown schema fingerprint {data[2:HEADER_LEN].hex()}"


def _read(body: bytes, plan: Plan) -> Any:
    """Schema resolution from an older (or newer) writer schema to the current reader schema."""
    return fastavro.schemaless_reader(io.BytesIO(body), plan.writer.schema, plan.reader)


def decode(data: bytes | None, topic: str = "?", partition: int = -1, offset: int = -1) -> Event:
    """Decode one message to its event; see `decode_full`."""
    return decode_full(data, topic, partition, offset).event
