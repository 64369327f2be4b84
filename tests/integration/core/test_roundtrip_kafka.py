"""The contract through a real broker: every event type round-trips, bad bytes are named, not fatal.

Events go out with the project's idempotent producer and come back through a plain
confluent-kafka consumer; garbage written by a foreign producer between good
events gives a `ContractError` naming topic, partition and offset, and the good
events after it are still read. Topics created from the registry carry the
retention Kafka must apply to each.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from confluent_kafka import Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from services.core.cloudevent import ID_HEADER, TYPE_HEADER, event_type
from services.core.connection import KafkaConnection
from services.core.errors import ContractError
from services.core.events import ALL_EVENTS, Event
from services.core.kafka import (
    DeliveryRefused,
    EventProducer,
    admin_client,
    create_topics,
    decode_message,
    read_all,
)
from services.core.policy import load_policy
from services.core.serde import MARKER, decode, encode, registry
from services.core.topics import BACKBONE, Topics, TopicSpec
from tests.support.golden.samples import SAMPLES

PARTITIONS = 3


@pytest.fixture
def topics(kafka_admin: KafkaConnection, namespace: str) -> Iterator[Topics]:
    """This test's topics; deleted afterwards so the shared broker does not fill up."""
    yield Topics(namespace)
    admin = admin_client(kafka_admin)
    mine = [name for name in admin.list_topics(timeout=10).topics if name.startswith(namespace)]
    if mine:
        for future in admin.delete_topics(mine, operation_timeout=30).values():
            future.result()


def make_topic(connection: KafkaConnection, name: str, partitions: int = PARTITIONS) -> str:
    create_topics(connection, [TopicSpec(name, "listing_id", tuple(ALL_EVENTS))], partitions, 1)
    return name


def read(connection: KafkaConnection, topic: str) -> list[Message]:
    return list(read_all(connection, [topic]))


def header(message: Message, name: str) -> str:
    value = dict(message.headers() or [])[name]
    assert isinstance(value, bytes), f"header {name} missing or not bytes: {value!r}"
    return value.decode()


def test_every_event_type_round_trips_through_a_topic(kafka_admin: KafkaConnection, topics: Topics) -> None:
    topic = make_topic(kafka_admin, topics.listings("court"))
    producer = EventProducer(kafka_admin)
    for name, event in SAMPLES.items():
        producer.send(topic, key=name, event=event)
    producer.flush()

    messages = read(kafka_admin, topic)

    types = {event_type(registry().writer(name)): name for name in ALL_EVENTS}
    assert sorted(header(m, TYPE_HEADER) for m in messages) == sorted(types)
    for message in messages:
        name = types[header(message, TYPE_HEADER)]
        decoded = decode_message(message)
        assert decoded.event == SAMPLES[name]
        assert type(decoded.event).__name__ == name
        assert header(message, ID_HEADER) == SAMPLES[name].envelope.event_id
        assert message.key() == name.encode()
        assert message.value() == encode(SAMPLES[name])


def test_send_sync_reports_where_the_event_landed(kafka_admin: KafkaConnection, topics: Topics) -> None:
    topic = make_topic(kafka_admin, topics.ledger)
    producer = EventProducer(kafka_admin)
    first = producer.send_sync(topic, "L-1", SAMPLES["ListingState"])
    second = producer.send_sync(topic, "L-1", SAMPLES["ListingState"])
    assert (first.topic, second.partition, second.offset) == (topic, first.partition, first.offset + 1)
    landed = [m for m in read(kafka_admin, topic) if m.offset() == second.offset]
    assert decode_message(landed[0]).event == SAMPLES["ListingState"]


def test_a_send_the_broker_refuses_is_named_at_flush_with_its_bytes_never_dropped_unsaid(
    kafka_admin: KafkaConnection, topics: Topics
) -> None:
    """A topic whose records may be at most 2 KiB refuses a 20 KiB one (random, so lz4 cannot
    shrink it): librdkafka reports that only to a delivery callback, so a send without one used to
    vanish while `flush` returned as if all went out."""
    topic = topics.ledger
    admin = admin_client(kafka_admin)  # kept: a client collected mid-call fails its futures
    admin.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": "2048"})])[topic].result(30)
    producer, big = (
        EventProducer(kafka_admin),
        SAMPLES["Rejected"].model_copy(update={"payload": os.urandom(20_000)}),
    )
    producer.send(topic, "small", SAMPLES["ListingState"])
    producer.flush()  # its own batch: the broker's limit is per batch of records
    producer.send(topic, "big", big)
    with pytest.raises(DeliveryRefused) as refusal:
        producer.flush()
    [refused] = refusal.value.refused
    assert (refused.topic, refused.key, decode(refused.value)) == (topic, b"big", big)
    assert "too large" in refused.reason.lower() and topic in str(refusal.value)
    assert [m.key() for m in read(kafka_admin, topic)] == [b"small"]
    producer.flush()  # said once: the next flush has nothing to refuse
    producer.close()


def test_closing_delivers_what_was_queued_and_releases_the_client(
    kafka_admin: KafkaConnection, topics: Topics
) -> None:
    topic = make_topic(kafka_admin, topics.ledger)
    producer = EventProducer(kafka_admin)
    for _ in range(3):
        producer.send(topic, "L-1", SAMPLES["ListingState"])  # queued, never flushed by the test
    producer.close()
    assert len(read(kafka_admin, topic)) == 3
    with pytest.raises(RuntimeError, match="closed"):
        producer.send(topic, "L-1", SAMPLES["ListingState"])


BAD_VALUES: list[bytes | None] = [
    b"not avro at all",
    MARKER + bytes(8) + b"\x02",  # a fingerprint no schema has
    encode(SAMPLES["ListingIssued"])[:-4],  # truncated body
    None,  # a bare tombstone
]


def test_bad_bytes_are_named_and_the_good_events_around_them_are_all_read(
    kafka_admin: KafkaConnection, topics: Topics
) -> None:
    topic = make_topic(kafka_admin, topics.listings("luoshan-police"), partitions=1)
    good: list[Event] = [SAMPLES["ListingIssued"], SAMPLES["ListingCorrected"], SAMPLES["ListingRevoked"]]
    events, foreign = EventProducer(kafka_admin), Producer(kafka_admin.client_config())
    events.send_sync(topic, "L-1", good[0])
    for bad in BAD_VALUES:
        foreign.produce(topic, key=b"L-1", value=bad)
    assert foreign.flush(30) == 0
    for event in good[1:]:
        events.send_sync(topic, "L-1", event)

    decoded, errors = [], []
    for message in read(kafka_admin, topic):  # what every consumer loop does: name it, go on
        try:
            decoded.append(decode_message(message).event)
        except ContractError as error:
            errors.append((message.offset(), str(error)))

    assert decoded == good
    assert [offset for offset, _ in errors] == [1, 2, 3, 4]
    for offset, text in errors:
        assert f"{topic}[0]@{offset}" in text


def test_topics_from_the_registry_are_kept_or_compacted_as_designed(
    kafka_admin: KafkaConnection, topics: Topics
) -> None:
    policy = load_policy()
    specs = topics.specs(policy.issuers, policy.enforcers)
    create_topics(kafka_admin, specs, PARTITIONS, 1)
    create_topics(kafka_admin, specs, PARTITIONS, 1)  # a second run leaves them as they are

    admin = admin_client(kafka_admin)
    configs = describe(admin, [s.name for s in specs])
    listing_topics = [topics.listings(a) for a in [*policy.issuers, BACKBONE]]
    for name in listing_topics:
        kept = (
            configs[name]["cleanup.policy"],
            configs[name]["retention.ms"],
            configs[name]["retention.bytes"],
        )
        assert kept == ("delete", "-1", "-1"), name
    for name in [topics.ledger, *[topics.views(a) for a in policy.enforcers]]:
        assert configs[name]["cleanup.policy"] == "compact", name
    metadata = admin.list_topics(timeout=10).topics
    assert all(len(metadata[s.name].partitions) == PARTITIONS for s in specs)


def describe(admin: AdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    out = {}
    for resource, future in admin.describe_configs(resources, request_timeout=30).items():
        out[resource.name] = {key: entry.value for key, entry in future.result().items()}
    return out
