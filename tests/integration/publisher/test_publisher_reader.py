"""The publisher's log reader: a long log is read to its end however long it takes; only a
reader that makes no progress for its timeout gives up."""

from __future__ import annotations

import time

from services.core.kafka import EventProducer
from services.core.serde import Decoded
from services.publisher.reader import LogReader
from services.publisher.state import Position
from tests.integration.publisher.conftest import Backbone
from tests.support.factory import Ledgerbook

EVENTS = 1000
TIMEOUT_S = 0.3


def test_a_log_longer_than_the_timeout_to_read_is_read_to_its_end(backbone: Backbone) -> None:
    book = Ledgerbook(backbone.keystore)
    topic = backbone.topics.listings("court")
    producer = EventProducer(backbone.connection)
    for i in range(EVENTS):
        producer.send(topic, f"L-{i}", book.issue(f"L-{i}"))
    producer.flush()
    seen: list[Position] = []

    def slow_sink(decoded: Decoded, at: Position, key: bytes) -> None:
        time.sleep(0.001)  # 1,000 events take at least 1 s: more than three timeouts
        seen.append(at)

    reader = LogReader(backbone.connection, backbone.listing_topics, TIMEOUT_S)
    try:
        started = time.monotonic()
        reader.catch_up(slow_sink)
        assert time.monotonic() - started > 3 * TIMEOUT_S
    finally:
        reader.close()
    assert len(seen) == EVENTS == len(set(seen))
