"""Trust boundaries on the real, secured session broker: each principal can do its job and no more.

Principals and ACLs are provisioned exactly as `accord backbone up` does (`provision`), in
this test's namespace. Every refusal is checked twice: the client gets an authorization
error, and the super user, reading the topic, finds nothing written.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from services.acl.apply import apply
from services.acl.plan import plan
from services.acl.principals import connection_of
from services.backbone import provision
from services.core.connection import KafkaConnection
from services.core.kafka import admin_client, consumer, end_offsets, producer_config
from services.core.policy import load_policy
from services.core.settings import KafkaSettings
from services.core.topics import Topics
from tests.support.prerequisites import missing

COURT, POLICE, AVIATION, RAIL = "court", "luoshan-police", "civil-aviation", "railway"
REFUSED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED}


@dataclass
class Secured:
    admin: KafkaConnection
    topics: Topics
    folder: Path

    def as_(self, role: str) -> KafkaConnection:
        return connection_of(self.admin, f"{self.topics.namespace}{role}", self.folder)

    def written(self, topic: str) -> int:
        return sum(end_offsets(self.admin, [topic]).values())


@pytest.fixture
def secured(kafka_admin: KafkaConnection, namespace: str, tmp_path: Path) -> Iterator[Secured]:
    if not kafka_admin.uses_sasl:
        missing("the session broker is not secured (a PLAINTEXT KAFKA_BOOTSTRAP_SERVERS or container)")
    folder = tmp_path / "credentials"
    provision(kafka_admin, KafkaSettings.of(kafka_admin, namespace=namespace, replication_factor=1), folder)
    yield Secured(kafka_admin, Topics(namespace), folder)


def produce(connection: KafkaConnection, topic: str) -> KafkaError | None:
    """Produce one record; the delivery report's error, if any."""
    producer = Producer(producer_config(connection, **{"message.timeout.ms": 10000}))
    errors: list[KafkaError | None] = []
    try:
        producer.produce(topic, key=b"L-1", value=b"x", on_delivery=lambda err, _: errors.append(err))
        producer.flush(20)
    except KafkaException as e:  # a principal that may write nowhere fails fatally: no producer id
        return e.args[0]  # type: ignore[no-any-return]
    return errors[0] if errors else None


def first_error(reader: Consumer, seconds: float = 15.0) -> KafkaError | None:
    """Poll until the consumer reports an error (or give up): authorization errors come as messages.
    A record received instead is a failure in itself."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = reader.poll(0.5)
        if msg is not None and msg.error() is not None:
            return msg.error()
        assert msg is None or msg.value() is None, f"read {msg.topic()}[{msg.partition()}]"
    return None


def code(error: KafkaError | None) -> int | None:
    return None if error is None else int(error.code())


def test_an_agency_writes_its_own_listing_topic_and_no_other(secured: Secured) -> None:
    court, topics = secured.as_(COURT), secured.topics

    assert produce(court, topics.listings(COURT)) is None
    assert code(produce(court, topics.listings(POLICE))) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert code(produce(court, topics.views(AVIATION))) == KafkaError.TOPIC_AUTHORIZATION_FAILED

    assert secured.written(topics.listings(COURT)) == 1
    assert secured.written(topics.listings(POLICE)) == 0
    assert secured.written(topics.views(AVIATION)) == 0


def test_an_agency_reads_its_own_view_and_not_another_agencys(secured: Secured) -> None:
    topics, aviation = secured.topics, secured.as_(AVIATION)
    assert produce(secured.admin, topics.views(RAIL)) is None  # railway's watch list holds a listing

    theirs = consumer(aviation, aviation.group("spy"))
    try:
        theirs.subscribe([topics.views(RAIL)])
        assert code(first_error(theirs)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        theirs.close()
    mine = consumer(aviation, aviation.group("copy"))
    try:
        mine.subscribe([topics.views(AVIATION)])
        assert first_error(mine, seconds=3.0) is None
    finally:
        mine.close()
    assert secured.written(topics.views(RAIL)) == 1  # there was something to steal


def test_a_copy_cannot_acknowledge_or_report_a_digest_in_another_agencys_name(secured: Secured) -> None:
    topics, aviation = secured.topics, secured.as_(AVIATION)

    assert produce(aviation, topics.copies_applied(AVIATION)) is None
    assert code(produce(aviation, topics.copies_applied(RAIL))) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert code(produce(aviation, topics.copies_digests(RAIL))) == KafkaError.TOPIC_AUTHORIZATION_FAILED

    assert secured.written(topics.copies_applied(RAIL)) == 0
    assert secured.written(topics.copies_digests(RAIL)) == 0


def test_an_agency_may_not_join_another_principals_consumer_group(secured: Secured) -> None:
    aviation = secured.as_(AVIATION)
    theirs = Consumer(aviation.client_config(**{"group.id": f"{secured.topics.namespace}{RAIL}.copy"}))
    try:
        theirs.subscribe([secured.topics.views(AVIATION)])
        assert code(first_error(theirs)) == KafkaError.GROUP_AUTHORIZATION_FAILED
    finally:
        theirs.close()


@pytest.mark.parametrize("how", ["no credentials", "wrong password", "unknown user"])
def test_a_client_that_cannot_authenticate_is_refused(secured: Secured, how: str) -> None:
    court = secured.as_(COURT)
    client = {
        "no credentials": KafkaConnection(court.bootstrap, "SSL", ca_file=court.ca_file),
        "wrong password": court.as_user(court.username or "", "not-the-password"),
        "unknown user": court.as_user("intruder", "guess"),
    }[how]
    with pytest.raises(KafkaException):
        admin_client(client).list_topics(timeout=5)
    assert code(produce(client, secured.topics.listings(COURT))) is not None
    assert secured.written(secured.topics.listings(COURT)) == 0


def test_each_service_can_do_its_job_and_nothing_else(secured: Secured) -> None:
    topics = secured.topics
    ledger, reconciler, audit = (secured.as_(s) for s in ("ledger", "reconciler", "audit"))

    assert produce(ledger, topics.views(AVIATION)) is None
    assert produce(ledger, topics.ledger) is None
    assert produce(ledger, topics.listings("backbone")) is None  # the backbone's own expiries
    assert code(produce(ledger, topics.listings(COURT))) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert code(produce(ledger, topics.findings)) == KafkaError.TOPIC_AUTHORIZATION_FAILED

    assert produce(reconciler, topics.findings) is None
    assert produce(reconciler, topics.views(RAIL)) is None  # a repair
    assert code(produce(reconciler, topics.ledger)) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert code(produce(reconciler, topics.listings(COURT))) == KafkaError.TOPIC_AUTHORIZATION_FAILED

    nowhere = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}
    assert code(produce(audit, topics.rejected)) in nowhere
    assert code(produce(audit, topics.listings(COURT))) in nowhere
    every = [spec.name for spec in topics.specs(load_policy().issuers, load_policy().enforcers)]
    assert sum(end_offsets(audit, every).values()) == 5  # audit sees every topic: all the above

    assert secured.written(topics.listings(COURT)) == 0
    assert secured.written(topics.rejected) == 0


def acl(topic: str, user: str, permission: AclPermissionType) -> AclBinding:
    return AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, f"User:{user}", "*",
                      AclOperation.READ, permission)  # fmt: skip


def create(admin: KafkaConnection, binding: AclBinding) -> None:
    client = admin_client(admin)
    for future in client.create_acls([binding]).values():
        future.result()


def test_acl_apply_is_idempotent_and_removes_what_the_policy_no_longer_grants(secured: Secured) -> None:
    topics, admin = secured.topics, secured.admin
    wanted = plan(load_policy(), topics)
    assert apply(admin, wanted, topics.namespace).added == []  # provisioned already: nothing to do

    create(admin, acl(topics.views(RAIL), f"{topics.namespace}{AVIATION}", AclPermissionType.ALLOW))
    create(admin, acl(topics.views(AVIATION), f"{topics.namespace}{COURT}", AclPermissionType.DENY))

    changes = apply(admin, wanted, topics.namespace)

    assert [g.name for g in changes.removed] == [topics.views(RAIL)] and changes.added == []
    again = apply(admin, wanted, topics.namespace)
    assert again.added == [] and again.removed == []  # and an operator's DENY stays
