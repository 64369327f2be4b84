"""The ledger's repair for messages Faust skips: re-reading an exact offset range from the broker."""

from __future__ import annotations

from confluent_kafka import Producer

from services.core.connection import KafkaConnection
from services.core.kafka import create_topics, producer_config
from services.core.topics import KEEP_FOREVER, TopicSpec
from services.ledger.refetch import read_range


def test_read_range_returns_exactly_the_missing_messages_in_order(
    kafka_admin: KafkaConnection, namespace: str
) -> None:
    topic = f"{namespace}listings.court"
    create_topics(kafka_admin, [TopicSpec(topic, "listing_id", (), KEEP_FOREVER)], 1, 1)
    producer = Producer(producer_config(kafka_admin))
    for i in range(10):
        producer.produce(topic, key=f"L-{i}".encode(), value=f"v{i}".encode(), partition=0)
    assert producer.flush(30) == 0

    found = read_range(kafka_admin, topic, 0, 3, 7)
    assert [(m.offset, m.key, m.payload) for m in found] == [
        (i, f"L-{i}".encode(), f"v{i}".encode()) for i in range(3, 7)
    ]
    assert {m.topic for m in found} == {topic} and all(m.timestamp.tzinfo for m in found)
