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
from functools import cache
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


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloudevent_headers(event: Event, written_by: str) -> list[tuple[str, bytes]]:
    """The binary-mode headers of `event` from `written_by` (a `source`), in its type's current schema."""
    kind, schema = _of_type(type(event).__name__)
    envelope = event.envelope
    attributes = {
        "ce_specversion": SPEC_VERSION,
        ID_HEADER: envelope.event_id,
        "ce_source": written_by,
        TYPE_HEADER: kind,
        "ce_subject": envelope.listing_id,  # left out when empty (a digest names no listing)
        "ce_time": rfc3339(envelope.occurred_at),
        "content-type": CONTENT_TYPE,
        "ce_dataschema": schema,
    }
    return [(name, value.encode()) for name, value in attributes.items() if value]


@cache
def _of_type(name: str) -> tuple[str, str]:
    """`ce_type` and `ce_dataschema` of a record name: fixed while the process runs (one registry)."""
    writer = registry().writer(name)
    return event_type(writer), data_schema(writer)
