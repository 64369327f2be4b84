"""Expiry bookkeeping and the worker's guard, without a broker.

The index must name each live listing once when due, follow corrections that move the
date, forget ended listings, and bring back a listing whose expiry lost a race. A failing
step must crash the worker, never be swallowed.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import NoReturn

import pytest

from services.core.listing import admit, evolve
from services.core.sealing import check_seal
from services.core.serde import decode_full, encode
from services.core.topics import BACKBONE
from services.ledger.app import guarded
from services.ledger.expiry import ExpiryIndex, expiry_of
from services.ledger.record import Inbound, decode_held, encode_held
from tests.support.factory import T0, Ledgerbook, policy_with_keys


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Ledgerbook:
    return Ledgerbook(policy_with_keys(tmp_path_factory.mktemp("keys"))[1])


def test_the_index_names_each_due_listing_once(book: Ledgerbook) -> None:
    index = ExpiryIndex()
    soon = evolve(None, book.issue("L-soon", days=10))  # type: ignore[arg-type]
    late = evolve(None, book.issue("L-late", days=100))  # type: ignore[arg-type]
    index.track(soon)
    index.track(late)
    index.track(soon)
    assert index.due(T0 + timedelta(days=9)) == []
    assert index.due(T0 + timedelta(days=10)) == ["L-soon"]
    index.written("L-soon")
    assert index.due(T0 + timedelta(days=150)) == ["L-late"]
    assert len(index) == 2  # L-soon stays known until its expiry is applied
    index.track(evolve(soon, expiry_of(soon, T0, book.keystore.private(BACKBONE))))
    assert len(index) == 1


def test_a_due_listing_is_asked_for_until_its_expiry_is_written(book: Ledgerbook) -> None:
    """A tick that could not write the expiry (the worker crashes) forgets nothing."""
    index = ExpiryIndex()
    index.track(evolve(None, book.issue("L-1", days=10)))  # type: ignore[arg-type]
    assert index.due(T0 + timedelta(days=11)) == ["L-1"]
    assert index.due(T0 + timedelta(days=11)) == ["L-1"]
    index.written("L-1")
    assert index.due(T0 + timedelta(days=12)) == []


def test_a_large_due_set_drains_over_ticks_soonest_first_and_each_once(book: Ledgerbook) -> None:
    """A tick asks for at most `limit` expiries: a backlog never runs through the loop in one go."""
    index = ExpiryIndex()
    for i in range(25):  # L-24 expires first, L-00 last
        index.track(evolve(None, book.issue(f"L-{i:02d}", expires_at=T0 + timedelta(days=50 - i))))  # type: ignore[arg-type]
    now, asked = T0 + timedelta(days=60), []
    while due := index.due(now, limit=10):
        assert len(due) <= 10
        asked.append(due)
        for listing_id in due:
            index.written(listing_id)
    assert [len(batch) for batch in asked] == [10, 10, 5]
    assert asked[0] == [f"L-{i:02d}" for i in range(15, 25)]  # the soonest ten
    assert sorted(lid for batch in asked for lid in batch) == [f"L-{i:02d}" for i in range(25)]


def test_an_unwritten_expiry_keeps_its_place_within_the_limit(book: Ledgerbook) -> None:
    """What a tick could not write is asked again before anything newer joins the batch."""
    index = ExpiryIndex()
    for i in range(4):
        index.track(evolve(None, book.issue(f"M-{i}", expires_at=T0 + timedelta(days=10 + i))))  # type: ignore[arg-type]
    now = T0 + timedelta(days=20)
    assert index.due(now, limit=2) == ["M-0", "M-1"]
    index.written("M-0")
    assert index.due(now, limit=2) == ["M-1", "M-2"]


def test_the_index_follows_corrections_and_forgets_ended_listings(book: Ledgerbook) -> None:
    index = ExpiryIndex()
    state = evolve(None, book.issue("L-1", days=10))  # type: ignore[arg-type]
    index.track(state)
    moved = evolve(state, book.correct("L-1", expires_at=T0 + timedelta(days=20)))  # type: ignore[arg-type]
    index.track(moved)
    assert index.due(T0 + timedelta(days=15)) == []
    index.track(evolve(moved, book.revoke("L-1")))  # type: ignore[arg-type]
    assert index.due(T0 + timedelta(days=30)) == []


def test_a_listing_whose_expiry_lost_a_race_is_due_again(book: Ledgerbook) -> None:
    index = ExpiryIndex()
    state = evolve(None, book.issue("L-1", days=10))  # type: ignore[arg-type]
    index.track(state)
    assert index.due(T0 + timedelta(days=11)) == ["L-1"]
    index.written("L-1")
    index.track(evolve(state, book.correct("L-1", legal_basis="amended")))  # type: ignore[arg-type]
    assert index.due(T0 + timedelta(days=11)) == ["L-1"]


def test_an_index_rebuilt_off_the_loop_adds_only_what_the_live_one_lacks(book: Ledgerbook) -> None:
    live, rebuilt = ExpiryIndex(), ExpiryIndex()
    issued = evolve(None, book.issue("L-1", days=10))  # type: ignore[arg-type]
    rebuilt.track(issued)
    rebuilt.track(evolve(None, book.issue("L-2", days=20)))  # type: ignore[arg-type]
    moved = evolve(issued, book.correct("L-1", expires_at=T0 + timedelta(days=30)))  # type: ignore[arg-type]
    live.track(moved)  # applied while the rebuild ran
    live.merge(rebuilt)
    assert live.due(T0 + timedelta(days=25)) == ["L-2"]


def test_an_expiry_is_sealed_by_the_backbone_linked_and_admitted(tmp_path: Path) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    own = Ledgerbook(keystore)
    state = evolve(None, own.issue("L-1", days=10))  # type: ignore[arg-type]
    expired = expiry_of(state, T0 + timedelta(days=10), keystore.private(BACKBONE))
    assert check_seal(decode_full(encode(expired)), policy.agency_by_id[BACKBONE].public_key) is None
    assert (expired.envelope.version, expired.envelope.prev_hash) == (2, state.envelope.hash)
    assert expired.expired_at == state.expires_at
    assert admit(state, expired, policy).action == "apply"


def test_held_messages_survive_their_table_encoding() -> None:
    held = [Inbound("t.listings.court", 2, 41, b"L-1", b"\xc3\x01x", T0), Inbound("t", 0, 0, None, None, T0)]
    assert decode_held(encode_held(held)) == held
    assert decode_held(None) == []


def test_a_failing_step_crashes_the_worker() -> None:
    crashes: list[BaseException] = []

    def crash(exc: BaseException) -> NoReturn:
        crashes.append(exc)
        raise SystemExit(70)

    async def fails() -> None:
        raise ValueError("handler bug")

    async def works() -> None:
        return None

    asyncio.run(guarded(works(), crash))
    assert crashes == []
    with pytest.raises(SystemExit):
        asyncio.run(guarded(fails(), crash))
    assert [str(e) for e in crashes] == ["handler bug"]
