"""A copy sink run in the test's own process against the real broker, and view changes to feed it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from confluent_kafka import ConsumerGroupTopicPartitions

from services.copies.clients import kafka_clients
from services.copies.settings import CopyOptions, CopySettings
from services.copies.sink import Sink
from services.core.connection import KafkaConnection
from services.core.copystore import CopyStore
from services.core.events import ViewChanged
from services.core.kafka import EventProducer, admin_client, create_topics, end_offsets
from services.core.policy import load_policy
from services.core.settings import KafkaSettings, KeystoreSettings, SecretSettings
from services.core.topics import Topics

PARTITIONS = 3
T = TypeVar("T")
POLICY = load_policy()


def settings(connection: KafkaConnection, namespace: str, **options: float) -> CopySettings:
    kafka = KafkaSettings.of(connection, namespace=namespace)
    options_ = CopyOptions(**options)  # type: ignore[arg-type]
    return CopySettings(kafka=kafka, secrets=SecretSettings(), options=options_, keys=KeystoreSettings())


def make_topics(connection: KafkaConnection, namespace: str) -> Topics:
    topics = Topics(namespace)
    create_topics(connection, topics.specs(POLICY.issuers, POLICY.enforcers), PARTITIONS, 1)
    return topics


def send(connection: KafkaConnection, topic: str, changes: Iterable[ViewChanged]) -> None:
    producer = EventProducer(connection)
    for change in changes:
        producer.send(topic, change.envelope.listing_id, change)
    producer.flush()


def caught_up(sink: Sink, connection: KafkaConnection, timeout: float = 60.0) -> None:
    """Poll until the store's positions reach the view topic's end offsets."""
    ends = {tp.partition: high for tp, high in end_offsets(connection, [sink.topic]).items()}
    deadline = time.monotonic() + timeout
    while any(sink.store.positions().get(p, 0) < high for p, high in ends.items() if high):
        assert time.monotonic() < deadline, f"sink stuck at {sink.store.positions()}, topic ends at {ends}"
        sink.poll()


def real_sink(store: CopyStore, connection: KafkaConnection, namespace: str, **options: float) -> Sink:
    """A sink on the real clients, built as `accord copy run` builds them."""
    feed, reporter = kafka_clients(connection, store.agency, namespace)
    return Sink(store.agency, store, settings(connection, namespace, **options), POLICY, feed, reporter)


def open_sink(store: CopyStore, connection: KafkaConnection, namespace: str, **options: float) -> Sink:
    sink = real_sink(store, connection, namespace, **options)
    sink.start()
    return sink


def wait_until(what: str, found: Callable[[], T | None], timeout: float = 60.0) -> T:
    """The first answer of `found` that is not None, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while (value := found()) is None:
        assert time.monotonic() < deadline, f"waited {timeout:.0f} s for {what}"
        time.sleep(0.2)
    return value


def group_offsets(connection: KafkaConnection, group: str, topic: str) -> dict[int, int]:
    """The offsets `group` committed on `topic`, as `kafka-consumer-groups.sh --describe` shows them."""
    admin = admin_client(connection)
    request = [ConsumerGroupTopicPartitions(group)]
    [future] = admin.list_consumer_group_offsets(request, request_timeout=20).values()
    found = future.result(timeout=30).topic_partitions or []
    return {tp.partition: tp.offset for tp in found if tp.topic == topic and tp.offset >= 0}
