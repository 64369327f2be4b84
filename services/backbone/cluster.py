"""The cluster as `accord backbone status` reports it: brokers alive and under-replicated partitions.

A partition is under-replicated while fewer of its replicas are in sync than it has (ISR < replicas):
a broker is down or behind, and one more loss could cost acknowledged events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException

from services.core.connection import KafkaConnection
from services.core.kafka import admin_client

METADATA_TIMEOUT_S = 10.0


def replication(connection: KafkaConnection, topics: Iterable[str]) -> dict[str, Any]:
    """Brokers alive, and each partition of `topics` whose in-sync replicas are fewer than its replicas."""
    admin = admin_client(connection, **{"socket.connection.setup.timeout.ms": 5000})
    try:
        metadata = admin.list_topics(timeout=METADATA_TIMEOUT_S)
    except KafkaException as e:
        return {"reachable": False, "error": str(e.args[0])}
    names = set(topics)
    short = [
        {"topic": name, "partition": p.id, "replicas": sorted(p.replicas), "in_sync": sorted(p.isrs),
         "leader": p.leader}
        for name, topic in sorted(metadata.topics.items()) if name in names
        for p in sorted(topic.partitions.values(), key=lambda p: p.id) if len(p.isrs) < len(p.replicas)
    ]  # fmt: skip
    return {"reachable": True, "brokers": sorted(metadata.brokers), "under_replicated": short}
