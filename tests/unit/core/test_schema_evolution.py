"""Every schema version stays backward and forward compatible with the one before it.

Backward: data an old producer wrote is read by a new consumer. Forward: data a new
producer wrote is read by an old consumer still running. Both are proved with
fastavro's schema resolution over random records of every schema, and through the
serde itself. Old version folders are immutable: a checksum manifest catches an edit.
To record a version that has just stopped being current, run with
ACCORD_REGENERATE_GOLDEN=1 (existing entries are never rewritten).
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.read import SchemaResolutionError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.events import ALL_EVENTS, Event
from services.core.serde import SCHEMA_ROOT, decode, registry
from tests.support.golden.samples import encode_with
from tests.unit.core.avro_spec import SchemaSet, values, versions
from tests.unit.core.model_strategies import models

MANIFEST = Path(__file__).resolve().parents[2] / "support" / "golden" / "schemas.sha256"
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PAIRS = list(zip(versions(), versions()[1:], strict=False))
SCHEMAS = {v: SchemaSet.load(v) for v in versions()}


def resolved(value: Any, writer: Any, reader: Any, writer_set: SchemaSet, reader_set: SchemaSet) -> Any:
    """What Avro resolution must yield for `value`: common fields kept, new ones defaulted."""
    writer, reader = writer_set.resolve(writer), reader_set.resolve(reader)
    if isinstance(reader, dict) and reader["type"] == "record":
        old = {f["name"]: f for f in writer["fields"]}
        return {
            f["name"]: (
                resolved(value[f["name"]], old[f["name"]]["type"], f["type"], writer_set, reader_set)
                if f["name"] in old
                else f["default"]
            )
            for f in reader["fields"]
        }
    return value


def _write(schema: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, record)
    return out.getvalue()


def _pairs_and_records() -> list[tuple[int, int, str]]:
    return [(old, new, name) for old, new in PAIRS for name in sorted(registry().versions[old])]


def test_there_is_a_history_to_check() -> None:
    assert PAIRS, "only one schema version: nothing proves compatibility"


@pytest.mark.parametrize(("old", "new"), PAIRS)
def test_no_record_disappears_from_a_newer_version(old: int, new: int) -> None:
    assert set(SCHEMAS[old].records()) <= set(SCHEMAS[new].records())


@pytest.mark.parametrize(("old", "new", "name"), _pairs_and_records())
@FAST
@given(data=st.data())
def test_backward_new_reader_reads_old_data(old: int, new: int, name: str, data: st.DataObject) -> None:
    record = data.draw(values(SCHEMAS[old], SCHEMAS[old].record(name)))
    writer, reader = registry().versions[old][name].schema, registry().versions[new][name].schema
    read = fastavro.schemaless_reader(io.BytesIO(_write(writer, record)), writer, reader)
    old_raw, new_raw = SCHEMAS[old].record(name), SCHEMAS[new].record(name)
    assert read == resolved(record, old_raw, new_raw, SCHEMAS[old], SCHEMAS[new])


@pytest.mark.parametrize(("old", "new", "name"), _pairs_and_records())
@FAST
@given(data=st.data())
def test_forward_old_reader_reads_new_data(old: int, new: int, name: str, data: st.DataObject) -> None:
    record = data.draw(values(SCHEMAS[new], SCHEMAS[new].record(name)))
    writer, reader = registry().versions[new][name].schema, registry().versions[old][name].schema
    read = fastavro.schemaless_reader(io.BytesIO(_write(writer, record)), writer, reader)
    new_raw, old_raw = SCHEMAS[new].record(name), SCHEMAS[old].record(name)
    assert read == resolved(record, new_raw, old_raw, SCHEMAS[new], SCHEMAS[old])


def test_resolution_expectation_is_not_vacuous() -> None:
    """v1 -> v2 adds Envelope.request_id: the expected v2 record has it, defaulted to None."""
    v1, v2 = SCHEMAS[1], SCHEMAS[2]
    envelope = {f["name"]: "x" for f in v1.record("Envelope")["fields"]}
    assert resolved(envelope, v1.record("Envelope"), v2.record("Envelope"), v1, v2)["request_id"] is None


def test_a_field_added_without_a_default_would_be_caught() -> None:
    """Guard the guard: the read path above refuses an incompatible reader, it does not guess."""
    current = SCHEMAS[max(versions())].record("Envelope")
    broken = copy.deepcopy(current) | {"fields": [*current["fields"], {"name": "tenant", "type": "string"}]}
    record = {f["name"]: None if f["name"] == "request_id" else "x" for f in current["fields"]} | {
        "version": 1
    }
    record |= {"occurred_at": 0, "recorded_at": 0}
    data = _write(fastavro.parse_schema(current), record)
    with pytest.raises(SchemaResolutionError, match="tenant"):
        fastavro.schemaless_reader(
            io.BytesIO(data), fastavro.parse_schema(current), fastavro.parse_schema(broken)
        )


@pytest.mark.parametrize("name", sorted(ALL_EVENTS))
@FAST
@given(data=st.data())
def test_serde_decodes_v1_messages_to_current_models(name: str, data: st.DataObject) -> None:
    event: Event = data.draw(models(ALL_EVENTS[name]))
    decoded = decode(encode_with(1, event), "listings.court", 0, 0)
    assert decoded.envelope.request_id is None
    assert decoded == event.model_copy(
        update={"envelope": event.envelope.model_copy(update={"request_id": None})}
    )


# --- old versions are immutable ------------------------------------------------------------------


def checksums(version: int) -> dict[str, str]:
    folder = SCHEMA_ROOT / f"v{version}"
    return {
        f"v{version}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.glob("*"))
        if p.is_file()
    }


def recorded() -> dict[str, str]:
    if not MANIFEST.is_file():
        return {}
    lines = [line.split() for line in MANIFEST.read_text().splitlines() if line.strip()]
    return {path: digest for digest, path in lines}


def _record_missing_versions(old_versions: list[int]) -> None:
    """Append versions never recorded; an entry, once written, is never rewritten."""
    manifest = recorded()
    for version in old_versions:
        if not any(path.startswith(f"v{version}/") for path in manifest):
            manifest.update(checksums(version))
    MANIFEST.write_text("".join(f"{digest}  {path}\n" for path, digest in sorted(manifest.items())))


def test_old_schema_versions_are_never_edited() -> None:
    old_versions = versions()[:-1]
    if os.environ.get("ACCORD_REGENERATE_GOLDEN") == "1":
        _record_missing_versions(old_versions)
    manifest = recorded()
    for version in old_versions:
        expected = {p: d for p, d in manifest.items() if p.startswith(f"v{version}/")}
        assert expected, f"v{version} is no longer current: record it (ACCORD_REGENERATE_GOLDEN=1)"
        assert checksums(version) == expected, (
            f"schemas/avro/v{version} was edited: old versions are immutable"
        )
