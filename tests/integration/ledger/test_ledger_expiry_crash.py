"""The expiry index survives `kill -9` in the middle of a stream: nothing due is missed, nothing twice.

A real worker (`accord ledger run`, RocksDB) is SIGKILLed while it decides a stream of issues
and corrections that move some listings' expiry an hour later; it is restarted at once on its own
data and decides the rest. The listings expire a day later: a worker started on the same data with
its clock a day and two hours ahead (`ACCORD_LEDGER_CLOCK_OFFSET_S`) expires every one of them
once, at the time its last version says. The index is the `expiring` table, recovered with its
partitions; nothing rebuilt it. (The clock is moved, not waited for, so that no expiry can fall
due while a slow machine still re-reads the corrections: it would rightly race them.)
"""

from __future__ import annotations

import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

from services.core.events import ListingExpired, ListingState
from services.core.topics import BACKBONE
from tests.integration.ledger.harness import Backbone, wait_for

ISSUED = 600
MOVED = 200  # of them, corrected to expire an hour later
AHEAD = timedelta(days=1, hours=2)
TIMEOUT = 180.0


def decided(backbone: Backbone) -> set[tuple[str, int]]:
    states = [s for s in backbone.read(backbone.topics.ledger) if isinstance(s, ListingState)]
    return {(s.envelope.listing_id, s.envelope.version) for s in states}


def all_expired(backbone: Backbone, count: int) -> dict[str, ListingState]:
    """Each listing's expired state, once `count` listings have one."""

    def ended() -> dict[str, ListingState] | None:
        backbone.assert_alive()
        states = {
            s.envelope.listing_id: s
            for s in backbone.read(backbone.topics.ledger)
            if isinstance(s, ListingState) and s.status == "expired"
        }
        return states if len(states) == count else None

    return wait_for(f"all {count} listings expired", ended, TIMEOUT, every=1.0)


def test_a_listing_expiring_after_a_kill_9_mid_stream_still_expires_once(backbone: Backbone) -> None:
    book = backbone.book()
    due_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    moved_to = due_at + timedelta(hours=1)
    issued = [book.issue(f"K-{i:04d}", expires_at=due_at) for i in range(ISSUED)]
    moved = [book.correct(f"K-{i:04d}", expires_at=moved_to) for i in range(0, 2 * MOVED, 2)]
    backbone.publish([*issued, *moved])
    backbone.start_ledger(store="rocksdb://")

    def mid_stream() -> bool:
        backbone.assert_alive()
        return backbone.count(backbone.topics.ledger) >= ISSUED // 5  # a wide margin: counting is slow

    wait_for("the worker half way through the stream", mid_stream, TIMEOUT, every=0.05)
    at_kill = backbone.count(backbone.topics.ledger)
    backbone.kill("ledger", signal.SIGKILL)
    assert at_kill < ISSUED + MOVED, "killed after the stream was through: not mid-stream"
    backbone.start_ledger(store="rocksdb://")
    wait_for("the rest decided", lambda: len(decided(backbone)) >= ISSUED + MOVED, TIMEOUT, every=1.0)
    backbone.kill("ledger", signal.SIGTERM)
    backbone.start_ledger(store="rocksdb://", ACCORD_LEDGER_CLOCK_OFFSET_S=str(AHEAD.total_seconds()))

    ended = all_expired(backbone, ISSUED)
    later = {e.envelope.listing_id for e in moved}
    assert {lid for lid, s in ended.items() if s.expires_at == moved_to} == later
    asked = [e for e in backbone.read(backbone.topics.listings(BACKBONE)) if isinstance(e, ListingExpired)]
    assert Counter(e.envelope.listing_id for e in asked) == Counter({f"K-{i:04d}": 1 for i in range(ISSUED)})
    assert all(e.expired_at == (moved_to if e.envelope.listing_id in later else due_at) for e in asked)


def test_input_read_again_after_a_restart_is_read_before_anything_expires(backbone: Backbone) -> None:
    """Corrections that moved listings' expiry later wait unread, behind a backlog of other issues,
    while the worker is down; it restarts with its clock past the old time: every listing ends at the
    time its correction gave it. The worker reads its input up to where it ended after the recovery
    before it asks for any expiry (`Ledger.caught_up`). Here Faust's fetch buffer alone already puts
    the backlog before the backbone's new expiries (the test passed with that wait removed): it holds
    the outcome, not the wait, which guards input decided before a stop but not yet in the tables."""
    book = backbone.book()
    due_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    moved_to, far = due_at + timedelta(hours=1), due_at + timedelta(days=30)
    count, backlog = 40, 1000
    backbone.publish([book.issue(f"M-{i:04d}", expires_at=due_at) for i in range(count)])
    backbone.start_ledger(store="rocksdb://")
    wait_for("the issues decided", lambda: len(decided(backbone)) >= count, TIMEOUT, every=0.5)
    backbone.kill("ledger", signal.SIGTERM)
    backbone.publish([book.issue(f"F-{i:05d}", expires_at=far) for i in range(backlog)])
    backbone.publish([book.correct(f"M-{i:04d}", expires_at=moved_to) for i in range(count)])
    backbone.start_ledger(store="rocksdb://", ACCORD_LEDGER_CLOCK_OFFSET_S=str(AHEAD.total_seconds()))

    ended = all_expired(backbone, count)
    early = sorted(lid for lid, s in ended.items() if s.expires_at != moved_to)
    assert early == [], f"{len(early)} expired at the time their unread correction had moved: {early[:5]}"
    assert {(lid, s.envelope.version) for lid, s in ended.items()} == {
        (f"M-{i:04d}", 3) for i in range(count)
    }
