"""Kafka plumbing shared by every service: topic creation, a confirmed-delivery producer, readers.

Driver errors are translated here, once, into `BrokerUnavailable`/`ContractError`.
Messages carry CloudEvents binary-mode headers (`core/cloudevent.py`) so operators and generic
tools can filter without decoding; the value alone is authoritative.
"""

from __future__ import annotations

import time
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic  # type: ignore[attr-defined]

from services.core.cloudevent import UNNAMED, Encoded, cloudevent_headers, headers
from services.core.connection import KafkaConnection
from services.core.errors import BrokerUnavailable, ConfigurationError
from services.core.events import Event
from services.core.partitioner import partition_of
from services.core.serde import Decoded, decode_full, encode
from services.core.topics import TopicSpec

LEFT_AS_THEY_ARE = (KafkaError.TOPIC_ALREADY_EXISTS, KafkaError.TOPIC_AUTHORIZATION_FAILED)
READ_POLL_S = 0.2  # how long `read_all` waits for a batch to fill before it checks its progress


def create_topics(
    connection: KafkaConnection, specs: Iterable[TopicSpec], partitions: int, replication: int
) -> None:
    """Create every topic in `specs` that does not exist yet, with `replication` replicas or not at all.

    Never silently fewer replicas than asked: an existing topic with fewer is refused (`ConfigurationError`
    naming each), and so is a new one while fewer brokers are alive than replicas asked. Existing
    topics with enough replicas are left as they are, and so are those the caller's principal is not
    authorized to create or describe."""
    admin = admin_client(connection)
    wanted = list(specs)
    if not wanted:
        return
    metadata = _cluster_metadata(admin)
    _refuse_fewer_replicas(metadata, wanted, replication)
    missing = [s for s in wanted if s.name not in metadata.topics]
    if missing and len(metadata.brokers) < replication:  # KRaft would place replicas on a dead broker
        _refuse_too_few_brokers(admin, [s.name for s in missing], replication, len(metadata.brokers))
    new = [NewTopic(s.name, partitions, replication, config=dict(s.config)) for s in wanted]
    for name, future in admin.create_topics(new, operation_timeout=30, request_timeout=30).items():
        try:
            future.result()
        except KafkaException as e:
            # A principal that may not create topics leaves them to the admin (`accord backbone up`).
            code = e.args[0].code()
            if code == KafkaError.INVALID_REPLICATION_FACTOR:
                raise ConfigurationError(_too_few_brokers(name, replication, len(metadata.brokers))) from e
            if code not in LEFT_AS_THEY_ARE:
                raise BrokerUnavailable(f"could not create topic {name}: {e}") from e


def _cluster_metadata(admin: AdminClient, topic: str | None = None) -> ClusterMetadata:
    try:
        return admin.list_topics(topic, timeout=30)
    except KafkaException as e:
        raise BrokerUnavailable(f"no cluster metadata: {e}") from e


def _refuse_fewer_replicas(metadata: ClusterMetadata, specs: list[TopicSpec], replication: int) -> None:
    """Topics of `specs` that exist with fewer replicas than asked: a cluster that looks replicated
    and is not would lose acknowledged events with one disk."""
    short = {}
    for spec in specs:
        found = metadata.topics.get(spec.name)
        if found is not None and found.error is None and found.partitions:
            fewest = min(len(p.replicas) for p in found.partitions.values())
            if fewest < replication:
                short[spec.name] = fewest
    if short:
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(short.items()))
        raise ConfigurationError(
            f"replication factor {replication} asked, but these topics exist with fewer replicas: {listed}; "
            "reassign their partitions (kafka-reassign-partitions) or ask for what they have"
        )


def _refuse_too_few_brokers(admin: AdminClient, names: list[str], replication: int, alive: int) -> None:
    """Refuse to create a topic of `names` while fewer brokers are alive than replicas asked.

    Kafka itself counts registered brokers, dead ones included, and would make the topic with a replica
    on a dead broker: under-replicated from birth. Topics the caller may not describe are not its own
    to create (the broker answers them as not authorized, not as unknown), so a service restarted
    during an outage does not refuse on behalf of the admin's topics."""
    for name in names:
        error = _cluster_metadata(admin, name).topics[name].error
        if error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise ConfigurationError(_too_few_brokers(name, replication, alive))


def _too_few_brokers(topic: str, replication: int, brokers: int) -> str:
    return (
        f"cannot create topic {topic} with replication factor {replication}: the cluster has {brokers} "
        f"broker(s) available; start more brokers or set ACCORD_REPLICATION_FACTOR to at most {brokers}"
    )


def producer_config(connection: KafkaConnection, **extra: Any) -> dict[str, Any]:
    """Idempotent, acks=all: a retried send never duplicates or reorders within a partition.

    murmur2 is the Java client's (and Faust's) partitioner: a listing's key lands in the
    same partition whichever client wrote it, so co-partitioned topics stay aligned.
    """
    return connection.client_config(
        **{
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            **extra,
        }
    )


def partition_for(key: str, partitions: int) -> int:
    """The partition `producer_config`'s partitioner (murmur2, the Java client's) gives `key`, so a
    message can be sent under another key to the partition its listing's messages are in."""
    return partition_of(key.encode(), partitions)


@dataclass(frozen=True)
class Delivered:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Refused:
    """A record sent without a delivery callback that the broker refused, or never confirmed within
    librdkafka's delivery timeout: as it was sent, so its sender can decide to keep or re-send it."""

    topic: str
    key: bytes
    value: bytes
    reason: str


class DeliveryRefused(BrokerUnavailable):
    """`flush` found sends that failed: a send without a callback is never dropped unsaid."""

    def __init__(self, refused: list[Refused]) -> None:
        first = refused[0]
        super().__init__(
            f"the broker refused {len(refused)} messages, the first to {first.topic}: {first.reason}"
        )
        self.refused = refused


class EventProducer:
    """Produces events and, on `send_sync`/`flush`, waits until the broker confirmed each one.

    `source` (`cloudevent.source`: who this producer writes for) is every message's `ce_source`."""

    def __init__(self, connection: KafkaConnection, source: str = UNNAMED, **extra: Any) -> None:
        self._producer = Producer(producer_config(connection, **extra))
        self._source = source
        self._refused: list[Refused] = []  # failed sends that had no callback, until `flush` says so

    def send(
        self,
        topic: str,
        key: str,
        event: Event,
        on_delivery: Any = None,
        partition: int | None = None,
        *,
        encoded: bytes | None = None,
    ) -> None:
        """Queue one event; call `flush` to wait for it. Never blocks for long on a full queue.

        Without `on_delivery`, a failed delivery is kept and the next `flush` raises `DeliveryRefused`
        with it (librdkafka reports it only to a callback: `flush` alone counts what is queued).
        `partition`, when given, overrides the key's partition (see `partition_for`); `encoded`,
        when given, is `serde.encode(event)` already done (a copy keeps its acknowledgements so)."""
        value = encode(event) if encoded is None else encoded
        headers: list[tuple[str, str | bytes | None]] = [*cloudevent_headers(event, self._source)]
        where: dict[str, Any] = {} if partition is None else {"partition": partition}
        report = self._note if on_delivery is None else on_delivery
        self._produce(topic, value=value, key=key.encode(), headers=headers, on_delivery=report, **where)

    def _note(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._refused.append(Refused(msg.topic() or "", msg.key() or b"", msg.value() or b"", err.str()))

    def send_encoded(self, topic: str, key: str, message: Encoded, on_delivery: Any = None) -> None:
        """Queue one event already encoded, with the headers its fields give (see `send`)."""
        ce = headers(message.name, self._source, message.event_id, message.subject, message.occurred_at)
        report = self._note if on_delivery is None else on_delivery
        self._produce(topic, value=message.value, key=key.encode(), headers=ce, on_delivery=report)

    def send_record(
        self, topic: str, partition: int, key: bytes, value: bytes | None, on_delivery: Any
    ) -> None:
        """Queue one record that is no event, as it is (a Faust table's changelog entry: no headers)."""
        self._produce(topic, value=value, key=key, partition=partition, on_delivery=on_delivery)

    def _produce(self, topic: str, **record: Any) -> None:
        while True:
            try:
                self._producer.produce(topic, **record)
                return
            except BufferError:
                self._producer.poll(0.1)

    def send_sync(self, topic: str, key: str, event: Event, timeout: float = 30.0) -> Delivered:
        """Send one event and return where it landed, once the broker confirmed it."""
        result: list[Message] = []
        failure: list[KafkaError] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            (failure.append(err) if err is not None else result.append(msg))

        self.send(topic, key, event, on_delivery=delivered)
        self.flush(timeout)
        if failure or not result:
            reason = failure[0].str() if failure else f"no confirmation within {timeout} s"
            raise BrokerUnavailable(f"delivery to {topic} failed: {reason}")
        msg = result[0]
        return Delivered(msg.topic() or topic, msg.partition() or 0, msg.offset() or 0)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait up to `timeout` for every queued message; `DeliveryRefused` names the sends without a
        callback that failed since the last flush, `BrokerUnavailable` what is still unconfirmed."""
        remaining = self._producer.flush(timeout)
        refused, self._refused = self._refused, []
        if refused:
            raise DeliveryRefused(refused)
        if remaining:
            raise BrokerUnavailable(f"{remaining} messages not confirmed within {timeout} s")

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Wait up to `timeout` for what is queued, then release the client now: one left to the
        garbage collector keeps reconnecting, and logging about it, to a broker that may be long gone.
        What the broker did not confirm by then is purged first (`BrokerUnavailable` says how many):
        librdkafka's close waits for every queued message, with the broker down for ever."""
        try:
            self.flush(timeout)
        finally:
            if len(self._producer):
                self._producer.purge()
            self._producer.close()


def consumer(connection: KafkaConnection, group: str, **extra: Any) -> Consumer:
    """A consumer that commits only when told: services store positions where their effects are.

    Name `group` with `connection.group(purpose)`: ACLs grant each principal only its own prefix.
    """
    config = {
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        **extra,
    }
    return Consumer(connection.client_config(**config))


def admin_client(connection: KafkaConnection, **extra: Any) -> AdminClient:
    """An admin client (topics, metadata, ACLs, credentials) on `connection`."""
    return AdminClient(connection.client_config(**extra))


def raise_on_error(msg: Message) -> None:
    err = msg.error()
    if err is not None and err.code() != KafkaError._PARTITION_EOF:
        raise BrokerUnavailable(f"consume failed on {msg.topic()}: {err.str()}")


def decode_message(msg: Message) -> Decoded:
    """Decode a consumed message; `ContractError` names its topic, partition and offset."""
    return decode_full(msg.value(), msg.topic() or "?", msg.partition() or 0, msg.offset() or 0)


def end_offsets(
    connection: KafkaConnection, topics: Iterable[str], timeout: float = 10.0
) -> dict[TopicPartition, int]:
    """The high watermark of every partition of `topics`: where a reader that has 'caught up' stops.

    A topic created a moment ago may not be in the metadata yet, or have no leader:
    that is retried until `timeout`, then reported as `BrokerUnavailable`.
    """
    names = list(topics)
    probe = consumer(connection, connection.group("watermarks"))
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                return _watermarks(probe, names, timeout)
            except (KeyError, KafkaException) as e:
                if time.monotonic() >= deadline:
                    raise BrokerUnavailable(f"no watermarks for {names} within {timeout} s: {e!r}") from e
                time.sleep(0.2)
    finally:
        probe.close()


def partition_counts(
    connection: KafkaConnection, names: Iterable[str], timeout: float = 10.0
) -> dict[str, int]:
    """How many partitions each topic of `names` has; topics that do not exist (or that the
    principal may not describe) are left out."""
    probe = consumer(connection, connection.group("metadata"))
    try:
        found = probe.list_topics(timeout=timeout).topics
    except KafkaException as e:
        raise BrokerUnavailable(f"no topic metadata from {connection}: {e}") from e
    finally:
        probe.close()
    return {name: len(found[name].partitions) for name in names if name in found}


def _watermarks(probe: Consumer, topics: list[str], timeout: float) -> dict[TopicPartition, int]:
    out: dict[TopicPartition, int] = {}
    metadata = probe.list_topics(timeout=timeout)
    for topic in topics:
        for partition in metadata.topics[topic].partitions:
            _, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            out[TopicPartition(topic, partition)] = high
    return out


def read_all(
    connection: KafkaConnection,
    topics: Iterable[str],
    batch: int = 1000,
    timeout: float = 10.0,
    partitions: Container[int] | None = None,
) -> Iterator[Message]:
    """Every message currently in `topics` (only the partitions numbered in `partitions`, if given),
    from the start, in batches; stops at the high watermarks."""
    ends = end_offsets(connection, topics, timeout).items()
    targets = {
        tp: high for tp, high in ends if high > 0 and (partitions is None or tp.partition in partitions)
    }
    if not targets:
        return
    reader = consumer(connection, connection.group("reader"))
    try:
        reader.assign([TopicPartition(tp.topic, tp.partition, 0) for tp in targets])
        remaining = {(tp.topic, tp.partition): high for tp, high in targets.items()}
        last_progress = time.monotonic()
        while remaining:
            # A short wait per batch: `consume` blocks for its whole timeout unless the batch fills,
            # so waiting `timeout` here would cost that much at the tail of every read.
            messages = reader.consume(num_messages=batch, timeout=READ_POLL_S)
            for msg in messages:
                raise_on_error(msg)
                if (msg.offset() or 0) < remaining.get((msg.topic() or "", msg.partition() or 0), 0):
                    yield msg
            if messages:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > timeout:
                raise BrokerUnavailable(f"no progress reading {sorted(remaining)} for {timeout} s")
            _drop_finished(reader, remaining)
    finally:
        reader.close()


def _drop_finished(reader: Consumer, remaining: dict[tuple[str, int], int]) -> None:
    """Forget partitions whose position reached the watermark (compaction may hide the last offsets)."""
    positions = reader.position([TopicPartition(t, p) for t, p in remaining])
    for tp in positions:
        if tp.offset >= remaining[(tp.topic, tp.partition)]:
            del remaining[(tp.topic, tp.partition)]
