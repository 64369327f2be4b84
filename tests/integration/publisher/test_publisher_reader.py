"""The publisher's ledger reader: a long ledger is read to its end however long it takes; only a
reader that makes no progress for its timeout gives up."""

from __future__ import annotations

import time
import uuid

from services.core.events import ListingState
from services.core.kafka import EventProducer, create_topics
from services.core.listing import evolve
from services.core.topics import Topics
from services.publisher.reader import LedgerReader
from services.publisher.state import LedgerBook
from tests.integration.publisher.conftest import Backbone
from tests.support.factory import Ledgerbook

STATES = 4000
TIMEOUT_S = 1.0  # a fresh SASL_SSL client and its metadata take more than 0.3 s on a loaded machine (seen)


class SlowBook(LedgerBook):
    def take_state(self, state: ListingState, raw: bytes | None = None) -> None:
        time.sleep(0.001)  # 4,000 states take at least 4 s: more than three timeouts
        super().take_state(state, raw)


def test_a_ledger_longer_than_the_timeout_to_read_is_read_to_its_end(backbone: Backbone) -> None:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    specs = [s for s in topics.specs([], []) if s.name in (topics.ledger, topics.rejected)]
    create_topics(backbone.connection, specs, partitions=3, replication=1)
    book, producer = Ledgerbook(backbone.keystore), EventProducer(backbone.connection)
    for i in range(STATES):
        producer.send(topics.ledger, f"L-{i}", evolve(None, book.issue(f"L-{i}")))
    producer.close()
    slow = SlowBook({})
    reader = LedgerReader(backbone.connection, [topics.ledger, topics.rejected], slow, TIMEOUT_S)
    try:
        started = time.monotonic()
        reader.catch_up()
        assert time.monotonic() - started > 3 * TIMEOUT_S
    finally:
        reader.close()
    assert len(slow) == STATES
