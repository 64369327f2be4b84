"""CloudEvents 1.0 in Kafka's binary content mode: the headers every message Accord produces carries.

The value stays the Avro single-object encoding (authoritative, signed); the headers repeat what
an operator or a generic tool (a CloudEvents-aware consumer, a Kafka UI) filters on without
decoding it:

- `ce_id`: the envelope's event id; `ce_subject`: the listing id; `ce_time`: `occurred_at` (RFC 3339);
- `ce_source`: `urn:accord[:<namespace>]:<producer>`, the agency or service that wrote the message
  (an agency's publisher, a copy by its agency's name, `ledger`, `reconciler`); not always the
  envelope's agency: the ledger's `ListingState` keeps the envelope of the event it decided;
- `ce_type`: `cn.accord.listing.issued.v2`, the Avro record name and its schema version;
- `content-type: application/avro` and `ce_dataschema`: the writer schema's name, version and
  CRC-64-AVRO fingerprint (the 8 bytes after the value's C3 01 marker).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import NamedTuple
from urllib.parse import quote

from services.core.events import Event
from services.core.serde import WriterSchema, registry

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/avro"
TYPE_PREFIX = "cn.accord."
ID_HEADER = "ce_id"
TYPE_HEADER = "ce_type"
UNNAMED = "urn:accord"  # the source of a producer not told who it is (tests, tools)


def event_type(writer: WriterSchema) -> str:
    """`ListingIssued` in schema v2 -> `cn.accord.listing.issued.v2`."""
    words = re.findall(r"[A-Z][a-z0-9]*", writer.name)
    return f"{TYPE_PREFIX}{'.'.join(w.lower() for w in words)}.v{writer.version}"


def source(namespace: str, producer: str) -> str:
    """A URN naming the producer within its deployment (the topic namespace, when there is one)."""
    parts = [namespace.strip("."), producer]
    return ":".join(["urn:accord", *(quote(p, safe="-._~") for p in parts if p)])


def data_schema(writer: WriterSchema) -> str:
    return f"urn:accord:schema:accord.{writer.name}:v{writer.version}:{writer.fingerprint.hex()}"


@lru_cache(maxsize=16)
def rfc3339(at: datetime) -> str:
    """Cached: a copy's acknowledgements of one batch, thousands a second, share one time."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Encoded(NamedTuple):
    """An event already encoded (`value`), with what its headers carry: its record name, id, subject
    and time. A copy builds its acknowledgements' bytes straight from their fields, no model made."""

    name: str
    event_id: str
    subject: str
    occurred_at: datetime
    value: bytes

    @classmethod
    def of(cls, event: Event, value: bytes) -> Encoded:
        """`event`, whose encoding is `value`."""
        env = event.envelope
        return cls(type(event).__name__, env.event_id, env.listing_id, env.occurred_at, value)


def cloudevent_headers(event: Event, written_by: str) -> list[tuple[str, bytes]]:
    """The binary-mode headers of `event` from `written_by` (a `source`), in its type's current schema."""
    env = event.envelope
    return headers(type(event).__name__, written_by, env.event_id, env.listing_id, env.occurred_at)


def headers(name: str, written_by: str, event_id: str, subject: str, at: datetime) -> list[tuple[str, bytes]]:
    """The headers of an event of record `name`: what depends only on the type and the writer is
    encoded once (`_fixed`), then the event's id, subject and time; an empty value is left out (a
    digest names no listing)."""
    varying = ((ID_HEADER, event_id), ("ce_subject", subject), ("ce_time", rfc3339(at)))
    return [*_fixed(name, written_by), *((n, v.encode()) for n, v in varying if v)]


@cache
def _fixed(name: str, written_by: str) -> tuple[tuple[str, bytes], ...]:
    """The headers shared by every event of record `name` from `written_by`, encoded: one process
    has one registry and a handful of writers, so this stays small."""
    kind, schema = _of_type(name)
    attributes = {
        "ce_specversion": SPEC_VERSION,
        "ce_source": written_by,
        TYPE_HEADER: kind,
        "content-type": CONTENT_TYPE,
        "ce_dataschema": schema,
    }
    return tuple((header, value.encode()) for header, value in attributes.items() if value)


@cache
def _of_type(name: str) -> tuple[str, str]:
    """`ce_type` and `ce_dataschema` of a record name: fixed while the process runs (one registry)."""
    writer = registry().writer(name)
    return event_type(writer), data_schema(writer)
