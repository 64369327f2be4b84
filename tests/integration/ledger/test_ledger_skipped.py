"""Messages the consumer group has committed past but the ledger never processed are not lost.

faust-streaming can drop a fetched message during recovery and commit past it. The
test creates that state on purpose: listing events are published and the ledger's
group offsets committed beyond them before the worker ever runs. The worker must
notice the jump from its own recorded positions and re-read the skipped range.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import TopicPartition

from services.core.connection import KafkaConnection
from services.core.events import ListingState
from services.core.kafka import consumer, end_offsets
from tests.integration.ledger.harness import Backbone, wait_for
from tests.support.backbones import running_backbone


@pytest.fixture
def backbone(kafka_admin: KafkaConnection, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backbone]:
    with running_backbone(kafka_admin, tmp_path_factory.mktemp("skipped")) as running:
        yield running


def commit_to_end(backbone: Backbone, topic: str) -> None:
    group = consumer(backbone.connection, f"{backbone.namespace}ledger")
    try:
        ends = [
            TopicPartition(tp.topic, tp.partition, high)
            for tp, high in end_offsets(backbone.connection, [topic]).items()
        ]
        group.commit(offsets=ends, asynchronous=False)
    finally:
        group.close()


def test_events_committed_past_but_never_processed_are_read_again(backbone: Backbone) -> None:
    book = backbone.book()
    issues = [book.issue(f"K-{i}") for i in range(6)]
    backbone.publish(issues)
    commit_to_end(backbone, backbone.topics.listings("court"))
    backbone.start_ledger()
    backbone.publish([book.correct(f"K-{i}", legal_basis="amended") for i in range(6)])

    def states() -> dict[str, ListingState] | None:
        backbone.assert_alive()
        found = {
            e.envelope.listing_id: e
            for e in backbone.read(backbone.topics.ledger)
            if isinstance(e, ListingState)
        }
        return found if len(found) == 6 and all(s.envelope.version == 2 for s in found.values()) else None

    found = wait_for("every listing at version 2", states, 90, every=0.5)
    assert {s.legal_basis for s in found.values()} == {"amended"}
    assert "skipped by Faust" in (backbone.folder / "ledger.log").read_text()


def test_skipped_events_with_nothing_after_them_are_read_again_once_the_worker_idles(
    backbone: Backbone,
) -> None:
    """No later message reveals the gap: the idle watch must, or the listings would never apply."""
    book = backbone.book()
    backbone.publish([book.issue(f"Q-{i}") for i in range(4)])
    commit_to_end(backbone, backbone.topics.listings("court"))
    backbone.start_ledger(ACCORD_LEDGER_STALL_AFTER_S="2")

    def states() -> dict[str, ListingState] | None:
        backbone.assert_alive()
        found = {e.envelope.listing_id: e for e in backbone.read(backbone.topics.ledger)}
        return found if len(found) == 4 else None  # type: ignore[return-value]

    assert set(wait_for("every listing applied", states, 90, every=0.5)) == {f"Q-{i}" for i in range(4)}
    assert "unread while idle: seeking back" in (backbone.folder / "ledger.log").read_text()
