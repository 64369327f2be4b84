"""Every message Accord produces is a CloudEvent in Kafka's binary content mode, read by the official SDK.

A court's publisher (as the court's own principal) issues and corrects a listing; the real ledger
worker rules on it and writes `ledger` and `views.civil-aviation`; civil aviation's real copy sink
applies it and acknowledges (`copies.applied.civil-aviation`) and reports digests. Each message
read back from the broker is parsed with `cloudevents.core.bindings.kafka.from_binary`, and its
id, type, source, subject, time and schema must match the Avro body the message carries.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Message, Producer

from services.core.connection import KafkaConnection
from services.core.crypto import AgencyKey
from services.core.kafka import decode_message, producer_config, read_all
from services.core.serde import decode_full, encode
from services.publisher.client import Publisher
from tests.integration.ledger.harness import Backbone, wait_for
from tests.support.cloudevents import as_cloudevent
from tests.unit.publisher import samples

WAIT = 60.0
COPY = "civil-aviation"


@pytest.fixture(scope="module")
def world(kafka_admin: KafkaConnection, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backbone]:
    folder: Path = tmp_path_factory.mktemp("cloudevents")
    backbone = Backbone(kafka_admin, f"t{uuid.uuid4().hex[:10]}.", folder)
    backbone.start_ledger()
    backbone.start_copy(COPY, f"sqlite:///{folder / 'copy.db'}")
    try:
        yield backbone
    finally:
        backbone.stop_all()


def assert_matches_body(message: Message, source: str) -> None:
    """The CloudEvent attributes say what the Avro value says, and who wrote it."""
    cloud, decoded = as_cloudevent(message), decode_message(message)
    envelope, value = decoded.event.envelope, message.value() or b""
    words = {"ListingState": "listing.state", "ViewChanged": "view.changed", "CopyApplied": "copy.applied",
             "CopyDigest": "copy.digest", "ListingIssued": "listing.issued",
             "ListingCorrected": "listing.corrected"}  # fmt: skip
    assert cloud.get_specversion() == "1.0"
    assert cloud.get_id() == envelope.event_id
    assert cloud.get_type() == f"cn.accord.{words[decoded.writer.name]}.v{decoded.writer.version}"
    assert cloud.get_source() == source
    assert cloud.get_time() == envelope.occurred_at
    assert cloud.get_subject() == (envelope.listing_id or None)
    assert cloud.get_datacontenttype() == "application/avro"
    dataschema = cloud.get_dataschema()
    assert dataschema is not None and dataschema.endswith(f":v{decoded.writer.version}:{value[2:10].hex()}")
    assert cloud.get_data() == value  # the data is the Avro value, byte for byte
    data = cloud.get_data()
    assert isinstance(data, bytes) and decode_full(data).event == decoded.event


def test_publisher_ledger_and_copy_messages_parse_as_cloudevents(world: Backbone) -> None:
    now = datetime.now(UTC)
    court = Publisher(
        world.connection_as("court"), world.topics, world.policy,
        AgencyKey("court", world.keystore.private("court")), samples.PSEUDONYM_KEY,
        timeout=WAIT, decision_wait=WAIT, clock=lambda: datetime.now(UTC),
    )  # fmt: skip
    try:
        issued = court.issue(samples.issue(notice_served_at=now - timedelta(days=10), effective_from=now))
        court.correct(samples.correct(issued.listing_id, 1))
    finally:
        court.close()
    lid, topics = issued.listing_id, world.topics

    def about_it(topic: str) -> list[Message]:
        return [m for m in read_all(world.connection, [topic]) if lid in (m.key() or b"").decode()]

    published = wait_for("the court's two events", lambda: about_it(topics.listings("court")), WAIT)
    ledger = wait_for(
        "the ledger's two states", lambda: s if len(s := about_it(topics.ledger)) >= 2 else None, WAIT
    )
    views = wait_for("civil aviation's view changes", lambda: about_it(topics.views(COPY)), WAIT)
    acks = wait_for(
        "the acks", lambda: a if len(a := about_it(topics.copies_applied(COPY))) >= 2 else None, WAIT
    )
    digest_topic = topics.copies_digests(COPY)
    digests = wait_for("a digest", lambda: list(read_all(world.connection, [digest_topic])), WAIT)

    ns = world.namespace.strip(".")
    writers = {"court": published, "ledger": [*ledger, *views], COPY: [*acks, *digests]}
    for producer, messages in writers.items():
        for message in messages:
            assert_matches_body(message, f"urn:accord:{ns}:{producer}")
    kinds = {as_cloudevent(m).get_type() for m in [*published, *ledger, *views, *acks, *digests]}
    names = ("listing.issued", "listing.corrected", "listing.state", "view.changed",
             "copy.applied", "copy.digest")  # fmt: skip
    assert kinds == {f"cn.accord.{name}.v2" for name in names}


def test_headers_are_never_trusted_the_ledger_writes_its_own_from_the_value(world: Backbone) -> None:
    """A court message whose headers lie (another id, type and source) is judged by its value, and
    what the ledger writes about it says what the value says: headers are not copied through."""
    event = world.book().issue(f"L-forged-{uuid.uuid4().hex[:8]}")
    lid, topics = event.envelope.listing_id, world.topics
    lies: list[tuple[str, str | bytes | None]] = [
        ("ce_id", b"someone-else"), ("ce_type", b"cn.accord.listing.revoked.v2"),
        ("ce_source", b"urn:accord:luoshan-police"), ("ce_specversion", b"1.0"),
    ]  # fmt: skip
    court = Producer(producer_config(world.connection_as("court")))  # core's settings, not its headers
    court.produce(topics.listings("court"), value=encode(event), key=lid.encode(), headers=lies)
    assert court.flush(WAIT) == 0

    def about_it() -> list[Message]:
        return [m for m in read_all(world.connection, [topics.ledger]) if m.key() == lid.encode()]

    (state,) = wait_for("the ledger's state of the forged-header listing", about_it, WAIT)
    assert_matches_body(state, f"urn:accord:{world.namespace.strip('.')}:ledger")
    assert as_cloudevent(state).get_id() == event.envelope.event_id != "someone-else"
