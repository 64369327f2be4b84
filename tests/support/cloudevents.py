"""A consumed Kafka message as the official CloudEvents SDK reads it (binary content mode)."""

from __future__ import annotations

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import Message


def as_cloudevent(message: Message) -> BaseCloudEvent:
    """The SDK's reading of `message`, its headers given as the binding's dict of bytes."""
    pairs = message.headers() or []
    assert isinstance(pairs, list), "a consumed message's headers are (name, value) pairs"
    headers = {name: value for name, value in pairs if isinstance(value, bytes)}
    return from_binary(KafkaMessage(headers, message.key(), message.value() or b""), JSONFormat())
