"""The expiry index survives `kill -9` in the middle of a stream: nothing due is missed, nothing twice.

A real worker (`accord ledger run`, RocksDB) is SIGKILLed while it decides a stream of issues
and corrections that move some listings' expiry later; it is restarted at once on its own
data. Every listing then expires once, after the restart, at the time its last version says:
the index is the `expiring` table, recovered with its partition, and no rebuild was run.
"""

from __future__ import annotations

import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

from services.core.events import ListingExpired, ListingState
from services.core.topics import BACKBONE
from tests.integration.ledger.harness import Backbone, wait_for

ISSUED = 600
MOVED = 200  # of them, corrected to expire later
TIMEOUT = 180.0


def test_a_listing_expiring_after_a_kill_9_mid_stream_still_expires_once(backbone: Backbone) -> None:
    book = backbone.book()
    due_at = datetime.now(UTC) + timedelta(seconds=40)
    moved_to = due_at + timedelta(seconds=5)
    issued = [book.issue(f"K-{i:04d}", expires_at=due_at) for i in range(ISSUED)]
    moved = [book.correct(f"K-{i:04d}", expires_at=moved_to) for i in range(0, 2 * MOVED, 2)]
    backbone.publish(issued + moved)
    backbone.start_ledger(store="rocksdb://")

    def mid_stream() -> bool:
        backbone.assert_alive()
        return backbone.count(backbone.topics.ledger) >= ISSUED // 2

    wait_for("the worker half way through the stream", mid_stream, TIMEOUT, every=0.05)
    decided = backbone.count(backbone.topics.ledger)
    backbone.kill("ledger", signal.SIGKILL)
    assert decided < ISSUED + MOVED, "killed after the stream was through: not mid-stream"
    backbone.start_ledger(store="rocksdb://")

    def all_expired() -> dict[str, ListingState] | None:
        backbone.assert_alive()
        ended = {
            s.envelope.listing_id: s
            for s in backbone.read(backbone.topics.ledger)
            if isinstance(s, ListingState) and s.status == "expired"
        }
        return ended if len(ended) == ISSUED else None

    ended = wait_for(f"all {ISSUED} listings expired", all_expired, TIMEOUT, every=1.0)
    later = {e.envelope.listing_id for e in moved}
    assert {lid for lid, s in ended.items() if s.expires_at == moved_to} == later
    asked = [e for e in backbone.read(backbone.topics.listings(BACKBONE)) if isinstance(e, ListingExpired)]
    assert Counter(e.envelope.listing_id for e in asked) == Counter({f"K-{i:04d}": 1 for i in range(ISSUED)})
    assert all(e.expired_at == (moved_to if e.envelope.listing_id in later else due_at) for e in asked)
    assert all(e.envelope.recorded_at >= e.expired_at for e in asked), "an expiry asked before its time"
