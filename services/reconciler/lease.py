"""Which of several reconcilers acts: the one Kafka's group coordinator gives partition 0.

Every reconciler reads the whole backbone and keeps its state warm, but only the holder
of the lease publishes findings and repairs, so two never repair everything twice. The
lease is membership of one consumer group on the `ledger` topic, the reconciler principal's
own `<principal>.lease` (its ACLs grant it the `<principal>.` groups): the coordinator assigns
partition 0 to exactly one live member, and hands it on when that member leaves or stops
heartbeating (`session.timeout.ms`). The lease consumer reads nothing: its partitions are
paused as soon as they are assigned.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, TopicPartition

from services.core.connection import KafkaConnection
from services.core.kafka import consumer

PURPOSE = "lease"


class Lease:
    def __init__(self, connection: KafkaConnection, topic: str, session_s: float) -> None:
        self.topic = topic
        session_ms = int(session_s * 1000)
        self._held: set[int] = set()
        self._consumer: Consumer = consumer(
            connection,
            connection.group(PURPOSE),
            **{"session.timeout.ms": session_ms, "heartbeat.interval.ms": max(100, session_ms // 6)},
        )
        self._consumer.subscribe(
            [topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._revoked
        )

    def held(self) -> bool:
        """Serve the group (rebalances, liveness) and say whether this reconciler holds the lease."""
        self._consumer.poll(0)
        return 0 in self._held

    def _assigned(self, reader: Consumer, partitions: list[TopicPartition]) -> None:
        reader.assign(partitions)
        reader.pause(partitions)
        self._held |= {tp.partition for tp in partitions}

    def _revoked(self, _: Any, partitions: list[TopicPartition]) -> None:
        self._held -= {tp.partition for tp in partitions}

    def close(self) -> None:
        """Leave the group now, so another reconciler takes the lease without waiting out the session."""
        self._held.clear()
        self._consumer.close()
