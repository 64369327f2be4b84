"""The AsyncAPI 3 document of a deployment: every topic, who sends and receives it, every message's Avro.

Generated, never written by hand: channels come from the topic registry (`topics.py`) for the
policy's agencies, messages and their payloads from `schemas/avro/<current>/`, the CloudEvents
headers from `cloudevent.py`, and the operations from who may read or write each topic (the ACL
plan, handed in as `Access` triples, so core imports no service). `accord asyncapi` prints it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro.schema import load_schema

from services.core.cloudevent import CONTENT_TYPE, SPEC_VERSION, data_schema, event_type
from services.core.policy import Policy
from services.core.serde import SCHEMA_ROOT, registry
from services.core.topics import Topics, TopicSpec

ASYNCAPI_VERSION = "3.0.0"
AVRO_FORMAT = "application/vnd.apache.avro;version=1.9.0"
KAFKA_BINDING = "0.5.0"
ACTIONS = {"WRITE": "send", "READ": "receive"}

DESCRIPTION = (
    "Credit-restriction listings shared between agencies (docs/architecture.md). Every message value is "
    "Avro single-object encoded (C3 01, the writer schema's CRC-64-AVRO fingerprint, the body); older "
    "schema versions are resolved on read. Headers follow the CloudEvents Kafka binding, binary mode."
)


@dataclass(frozen=True)
class Access:
    """`role` (an agency or a backbone service) may `operation` (READ or WRITE) the topic `topic`."""

    role: str
    operation: str
    topic: str


def document(topics: Topics, policy: Policy, access: Iterable[Access], version: str) -> dict[str, Any]:
    """The whole document, as plain data (YAML or JSON is the caller's choice)."""
    specs = topics.specs(policy.issuers, policy.enforcers)
    carried = sorted({name for spec in specs for name in spec.carries})
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": "Accord", "version": version, "description": DESCRIPTION},
        "defaultContentType": CONTENT_TYPE,
        "channels": {channel_id(spec.name): _channel(spec) for spec in specs},
        "operations": _operations(specs, access),
        "components": {"messages": {name: _message(name) for name in carried}, "schemas": _schemas()},
    }


def channel_id(topic: str) -> str:
    """A channel's key in the document: the topic name with what AsyncAPI ids do not allow replaced."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", topic)


def _channel(spec: TopicSpec) -> dict[str, Any]:
    return {
        "address": spec.name,
        "description": f"Key: {spec.key}.",
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in spec.carries},
        "bindings": {"kafka": {"topic": spec.name, "topicConfiguration": _configuration(spec.config),
                               "bindingVersion": KAFKA_BINDING}},
    }  # fmt: skip


def _configuration(config: dict[str, str]) -> dict[str, Any]:
    """The topic's configuration in the Kafka binding's terms (those the binding names)."""
    kept = ("retention.ms", "retention.bytes")
    out: dict[str, Any] = {name: int(config[name]) for name in kept if name in config}
    if "cleanup.policy" in config:
        out["cleanup.policy"] = config["cleanup.policy"].split(",")
    return out


def _operations(specs: list[TopicSpec], access: Iterable[Access]) -> dict[str, Any]:
    """One operation per role and topic it may write (send) or read (receive)."""
    carried = {spec.name: spec.carries for spec in specs}
    granted = {a for a in access if a.topic in carried and a.operation in ACTIONS}
    operations: dict[str, Any] = {}
    for grant in sorted(granted, key=lambda a: (a.topic, a.operation, a.role)):
        action, channel = ACTIONS[grant.operation], channel_id(grant.topic)
        operations[f"{channel_id(grant.role)}-{action}-{channel}"] = {
            "action": action,
            "title": f"{grant.role} {action}s {grant.topic}",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in carried[grant.topic]],
        }
    return operations


def _message(name: str) -> dict[str, Any]:
    writer = registry().writer(name)
    schema = _avro(_current() / f"accord.{name}.avsc")
    return {
        "name": name,
        "title": name,
        "summary": schema.get("doc", name),
        "contentType": CONTENT_TYPE,
        "headers": _headers(name),
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": schema},
        "bindings": {"kafka": {"key": {"type": "string"}, "bindingVersion": KAFKA_BINDING}},
        "x-accord-schema": {"version": writer.version, "fingerprint": writer.fingerprint.hex()},
    }


def _headers(name: str) -> dict[str, Any]:
    """The CloudEvents headers of `name`, as the JSON schema of the header map."""
    writer = registry().writer(name)
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"],
        "properties": {
            "ce_specversion": {"const": SPEC_VERSION},
            "ce_id": {**text, "description": "the envelope's event_id"},
            "ce_source": {**text, "description": "urn:accord[:<namespace>]:<the agency or service writing>"},
            "ce_type": {"const": event_type(writer)},
            "ce_subject": {**text, "description": "the listing id (absent when the event names none)"},
            "ce_time": {**text, "format": "date-time", "description": "the envelope's occurred_at"},
            "content-type": {"const": CONTENT_TYPE},
            "ce_dataschema": {"const": data_schema(writer)},
        },
    }


def _schemas() -> dict[str, Any]:
    """Every schema of the current version (records named inside others too), as Avro."""
    return {
        path.name.removeprefix("accord.").removesuffix(".avsc"): {
            "schemaFormat": AVRO_FORMAT,
            "schema": _avro(path),
        }
        for path in sorted(_current().glob("accord.*.avsc"))
    }


def _avro(path: Path) -> Any:
    """The schema in `path` with the records it names inlined (self-contained, as tools want it)."""
    return _split_names(load_schema(str(path), _write_hint=False))


def _split_names(schema: Any) -> Any:
    """fastavro writes full names (`accord.Envelope`); AsyncAPI's Avro schema wants name and namespace."""
    if isinstance(schema, list):
        return [_split_names(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _split_names(value) for key, value in schema.items()}
    if schema.get("type") in ("record", "enum", "fixed") and "." in schema.get("name", ""):
        out["namespace"], out["name"] = schema["name"].rsplit(".", 1)
    return out


def _current() -> Path:
    return SCHEMA_ROOT / f"v{max(registry().versions)}"
