"""Expiry bookkeeping and the worker's guard, without a broker.

The index must name each live listing once when due, follow corrections that move the
date, forget ended listings, bring back a listing whose expiry lost a race, and mend what a
crash in the middle of a batch left half-written. A failing
step must crash the worker, never be swallowed.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import NoReturn

import pytest

from services.core.events import ListingState
from services.core.listing import admit, evolve
from services.core.partitioner import partition_of
from services.core.sealing import check_seal
from services.core.serde import decode_full, encode
from services.core.topics import BACKBONE
from services.ledger.expiry import ExpiryIndex, Ordered, due_of, expiry_of, index_key, ordered
from services.ledger.layout import TABLES
from services.ledger.record import Inbound, decode_held, encode_held
from services.ledger.tables import rocksdb_options
from services.ledger.worker import guarded
from tests.support.factory import T0, Ledgerbook, policy_with_keys


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Ledgerbook:
    return Ledgerbook(policy_with_keys(tmp_path_factory.mktemp("keys"))[1])


class Worker:
    """The agent's side of the index, without Faust: the entries it keeps and the `expiring` table
    (a plain dict, scanned in key order as the memory store is)."""

    def __init__(self, table: dict[bytes, bytes] | None = None, partitions: int = 3) -> None:
        self.table = {} if table is None else table
        self.entries: dict[str, ListingState] = {}
        self.index = ExpiryIndex(self.table, lambda: ordered_dict(self.table), partitions)

    def apply(self, state: ListingState) -> None:
        listing_id = state.envelope.listing_id
        self.index.follow(self.entries.get(listing_id), state, applied=True)
        self.entries[listing_id] = state

    def due(self, now: datetime, limit: int = 100) -> list[str]:
        return [listing_id for _, listing_id in self.index.due(now, limit)]


def ordered_dict(table: dict[bytes, bytes]) -> Ordered:
    class Store:  # what `ordered` finds on a Faust table backed by the memory store
        data = table

    class Table:
        data = Store()

    return ordered(Table())


def test_the_index_names_each_due_listing_once(book: Ledgerbook) -> None:
    worker = Worker()
    soon = evolve(None, book.issue("L-soon", days=10))
    late = evolve(None, book.issue("L-late", days=100))
    worker.apply(soon)
    worker.apply(late)
    worker.index.follow(soon, soon, applied=False)  # a duplicate: nothing changes
    assert worker.due(T0 + timedelta(days=9)) == []
    assert worker.due(T0 + timedelta(days=10)) == ["L-soon"]
    worker.index.written("L-soon")
    assert worker.due(T0 + timedelta(days=150)) == ["L-late"]
    assert worker.index.size() == 2  # L-soon stays indexed until its expiry is applied
    worker.apply(evolve(soon, expiry_of(soon, T0, book.keystore.private(BACKBONE))))
    assert worker.index.size() == 1


def test_a_due_listing_is_asked_for_until_its_expiry_is_written(book: Ledgerbook) -> None:
    """A tick that could not write the expiry (the worker crashes) forgets nothing."""
    worker = Worker()
    worker.apply(evolve(None, book.issue("L-1", days=10)))
    assert worker.due(T0 + timedelta(days=11)) == ["L-1"]
    assert worker.due(T0 + timedelta(days=11)) == ["L-1"]
    worker.index.written("L-1")
    assert worker.due(T0 + timedelta(days=12)) == []


def test_a_large_due_set_drains_over_ticks_soonest_first_and_each_once(book: Ledgerbook) -> None:
    """A tick asks for at most `limit` expiries: a backlog never runs through the loop in one go."""
    worker = Worker()
    for i in range(25):  # L-24 expires first, L-00 last
        worker.apply(evolve(None, book.issue(f"L-{i:02d}", expires_at=T0 + timedelta(days=50 - i))))
    now, asked = T0 + timedelta(days=60), []
    while due := worker.due(now, limit=10):
        assert len(due) <= 10
        asked.append(due)
        for listing_id in due:
            worker.index.written(listing_id)
    assert [len(batch) for batch in asked] == [10, 10, 5]
    assert asked[0] == [f"L-{i:02d}" for i in range(24, 14, -1)]  # the soonest ten, soonest first
    assert sorted(lid for batch in asked for lid in batch) == [f"L-{i:02d}" for i in range(25)]


def test_an_unwritten_expiry_keeps_its_place_within_the_limit(book: Ledgerbook) -> None:
    """What a tick could not write is asked again before anything newer joins the batch."""
    worker = Worker()
    for i in range(4):
        worker.apply(evolve(None, book.issue(f"M-{i}", expires_at=T0 + timedelta(days=10 + i))))
    now = T0 + timedelta(days=20)
    assert worker.due(now, limit=2) == ["M-0", "M-1"]
    worker.index.written("M-0")
    assert worker.due(now, limit=2) == ["M-1", "M-2"]


def test_the_index_follows_corrections_and_forgets_ended_listings(book: Ledgerbook) -> None:
    worker = Worker()
    state = evolve(None, book.issue("L-1", days=10))
    worker.apply(state)
    moved = evolve(state, book.correct("L-1", expires_at=T0 + timedelta(days=20)))
    worker.apply(moved)
    assert worker.due(T0 + timedelta(days=15)) == []
    assert worker.due(T0 + timedelta(days=20)) == ["L-1"]
    worker.apply(evolve(moved, book.revoke("L-1")))
    assert worker.due(T0 + timedelta(days=30)) == [] and worker.table == {}


def test_a_listing_whose_expiry_lost_a_race_is_due_again(book: Ledgerbook) -> None:
    worker = Worker()
    state = evolve(None, book.issue("L-1", days=10))
    worker.apply(state)
    assert worker.due(T0 + timedelta(days=11)) == ["L-1"]
    worker.apply(evolve(state, book.correct("L-1", legal_basis="amended")))
    worker.index.written("L-1")  # confirmed after the correction was applied: it lost the race
    assert worker.due(T0 + timedelta(days=11)) == ["L-1"]


def test_keys_sort_by_time_then_id() -> None:
    times = [T0 + timedelta(microseconds=n) for n in (0, 1, 999_999, 10**12)]
    keys = [index_key(t, listing_id) for t in times for listing_id in ("A-1", "A-10", "B")]
    assert sorted(keys) == keys
    assert [due_of(k) for k in keys[:3]] == [(T0, "A-1"), (T0, "A-10"), (T0, "B")]


def test_a_restarted_worker_finds_every_due_listing_without_a_rebuild(book: Ledgerbook) -> None:
    """The table is all there is: a new index on the recovered table knows what the old one knew."""
    before = Worker()
    for i in range(5):
        before.apply(evolve(None, book.issue(f"R-{i}", expires_at=T0 + timedelta(days=10 + i))))
    assert before.due(T0 + timedelta(days=12), limit=1) == ["R-0"]
    before.index.written("R-0")  # then the worker dies before applying it
    after = Worker(dict(before.table))
    assert after.due(T0 + timedelta(days=12)) == ["R-0", "R-1", "R-2"]  # R-0 again: a duplicate, ignored


def test_a_key_lost_in_a_crash_is_written_again_when_its_message_is_re_read(book: Ledgerbook) -> None:
    """The entry's changelog record landed, the index's did not: the batch is read again, and the
    re-stated message (a duplicate, nothing applied) writes the key the entry has."""
    worker = Worker()
    state = evolve(None, book.issue("L-1", days=10))
    worker.entries["L-1"] = state  # what the recovered listings table holds; the index lacks it
    assert worker.due(T0 + timedelta(days=11)) == []
    worker.index.follow(state, state, applied=False)
    assert worker.due(T0 + timedelta(days=11)) == ["L-1"]


def test_a_stale_key_left_by_a_crash_is_skipped_then_deleted_in_its_own_partition(book: Ledgerbook) -> None:
    """The index's delete of the old key was lost: the tick sees the key no longer matches the entry,
    skips it from then on, and the agent deletes it with the next message of that partition."""
    worker = Worker(partitions=3)
    state = evolve(None, book.issue("L-1", days=10))
    worker.apply(state)
    moved = evolve(state, book.correct("L-1", expires_at=T0 + timedelta(days=20)))
    worker.entries["L-1"] = moved
    worker.index.follow(None, moved, applied=False)  # the new key landed, the delete of the old did not
    stale = index_key(state.expires_at, "L-1")
    assert worker.due(T0 + timedelta(days=11)) == ["L-1"]
    worker.index.stale(state.expires_at, "L-1")  # what `still_due` says after reading the entry
    assert worker.due(T0 + timedelta(days=11)) == []
    own = partition_of(b"L-1", 3)
    worker.index.tidy((own + 1) % 3, worker.entries.get)  # another partition's message: not here
    assert stale in worker.table
    worker.index.tidy(own, worker.entries.get)
    assert stale not in worker.table
    assert worker.due(T0 + timedelta(days=20)) == ["L-1"]


def test_a_stale_key_whose_entry_matches_it_again_is_kept(book: Ledgerbook) -> None:
    worker = Worker(partitions=1)
    state = evolve(None, book.issue("L-1", days=10))
    worker.apply(state)
    worker.index.stale(state.expires_at, "L-1")  # e.g. read while a correction moved it and back
    worker.index.tidy(0, worker.entries.get)
    assert worker.due(T0 + timedelta(days=11)) == ["L-1"]


def test_an_expiry_is_sealed_by_the_backbone_linked_and_admitted(tmp_path: Path) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    own = Ledgerbook(keystore)
    state = evolve(None, own.issue("L-1", days=10))
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


def test_every_tables_rocksdb_shares_one_memory_budget() -> None:
    """Faust's defaults give each partition's database a 2 GiB cache; the ledger splits one budget."""
    options = rocksdb_options(512, 6)
    per_db = options["block_cache_size"] + options["write_buffer_size"] * options["max_write_buffer_number"]
    assert per_db * len(TABLES) * 6 <= 512 * 1024 * 1024
