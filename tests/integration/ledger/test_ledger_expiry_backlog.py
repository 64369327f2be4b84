"""A large due set drains over ticks, a bounded number per tick, while the agent goes on deciding.

A real worker (`accord ledger run`, RocksDB) with `ACCORD_LEDGER_EXPIRIES_PER_TICK=20` holds 300
listings that all fall due at once. Every one of them expires, once, over at least 300 / 20 ticks,
and a listing issued while the backlog drains is decided before the backlog is through.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from services.core.events import ListingExpired, ListingState
from services.core.kafka import read_all
from services.core.serde import decode
from services.core.topics import BACKBONE
from tests.integration.ledger.harness import Backbone, wait_for

DUE = 300
PER_TICK = 20
TIMEOUT = 180.0


def written_at(backbone: Backbone, topic: str) -> list[tuple[float, object]]:
    """Each record of `topic` with its write time (CreateTime, stamped by the ledger's producer)."""
    return [
        ((m.timestamp()[1] or 0) / 1000, decode(m.value())) for m in read_all(backbone.connection, [topic])
    ]


def test_a_mass_expiry_drains_over_ticks_without_starving_the_agent(backbone: Backbone) -> None:
    book = backbone.book()
    due_at = datetime.now(UTC) + timedelta(seconds=15)
    backbone.publish([book.issue(f"X-{i:04d}", expires_at=due_at) for i in range(DUE)])
    backbone.start_ledger(store="rocksdb://", ACCORD_LEDGER_EXPIRIES_PER_TICK=str(PER_TICK))
    expiries = backbone.topics.listings(BACKBONE)

    def expiring() -> bool:
        backbone.assert_alive()
        return backbone.count(expiries) > 0

    wait_for("the first expiries asked for", expiring, TIMEOUT)
    backbone.publish([book.issue("X-live")])  # while the backlog drains

    def all_expired() -> list[tuple[float, object]] | None:
        backbone.assert_alive()
        records = written_at(backbone, backbone.topics.ledger)
        ended = {
            s.envelope.listing_id for _, s in records if isinstance(s, ListingState) and s.status == "expired"
        }
        return records if len(ended) == DUE else None

    records = wait_for(f"all {DUE} listings expired", all_expired, TIMEOUT, every=1.0)
    asked = [(at, e) for at, e in written_at(backbone, expiries) if isinstance(e, ListingExpired)]
    per_listing = Counter(e.envelope.listing_id for _, e in asked)
    assert set(per_listing) == {f"X-{i:04d}" for i in range(DUE)} and set(per_listing.values()) == {1}
    spread = max(at for at, _ in asked) - min(at for at, _ in asked)
    ticks = DUE // PER_TICK
    assert spread >= (ticks - 2) * 0.5, f"{DUE} expiries asked within {spread:.1f} s: not {PER_TICK} a tick"
    live = min(at for at, s in records if isinstance(s, ListingState) and s.envelope.listing_id == "X-live")
    last_expired = max(at for at, s in records if isinstance(s, ListingState) and s.status == "expired")
    assert live < last_expired, "the agent waited for the whole backlog before deciding a new listing"
