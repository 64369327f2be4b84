"""What a batch of the ledger's tables flushes: its own last write of each key (services/ledger/tables.py).

A batch is acked once its writes are stored. Were it to leave a key to a later batch that wrote the
key again, a crash before that later batch's flush would leave the store without the value of an
input already committed: the listing's next event would then look out of order, and be held.
Real Faust tables (memory store); no producer: the test looks at what each batch would send.
"""

from __future__ import annotations

import asyncio
import weakref

import faust
from faust.streams import _current_event

from services.ledger.tables import CURRENT, At, Batch, ConfirmedTable

EVENT = At(At.Message(1))  # the agent writes in an event of the listing's partition


def table(name: str) -> ConfirmedTable:
    app = faust.App(f"tables-test-{name}", store="memory://", Table=ConfirmedTable)
    made = app.Table(name, partitions=4, key_type=bytes, value_type=bytes)
    assert isinstance(made, ConfirmedTable)
    return made


def written(batch: Batch, tables: ConfirmedTable, *values: tuple[bytes, bytes]) -> None:
    """`values` written in `batch`, as the agent writes them."""
    CURRENT.set(batch)
    _current_event.set(weakref.ref(EVENT))  # type: ignore[arg-type]
    for key, value in values:
        tables[key] = value


def test_a_batch_flushes_its_own_last_write_of_a_key_a_later_batch_wrote_again() -> None:
    async def scenario() -> tuple[list[bytes | None], list[bytes | None], bytes | None]:
        listings = table("listings")
        first = Batch(None)
        written(first, listings, (b"L-1", b"v1"), (b"L-1", b"v1-again"), (b"L-2", b"w1"))
        later = Batch(first)
        written(later, listings, (b"L-1", b"v2"))
        first_sends = [w.value for w in first.leaves()]
        later_sends = [w.value for w in later.leaves()]
        return first_sends, later_sends, listings.stored(b"L-1")

    first_sends, later_sends, seen = asyncio.run(scenario())
    assert first_sends == [b"v1-again", b"w1"]  # once per key, its last value in the batch
    assert later_sends == [b"v2"]
    assert seen == b"v2"  # reads see the latest pending write


def test_a_deleted_key_is_flushed_as_a_tombstone() -> None:
    async def scenario() -> tuple[list[bytes | None], bool]:
        held = table("held")
        batch = Batch(None)
        written(batch, held, (b"L-1", b"messages"))
        del held[b"L-1"]
        return [w.value for w in batch.leaves()], b"L-1" in held

    sends, present = asyncio.run(scenario())
    assert sends == [None]
    assert not present


def test_a_batch_gives_up_the_partitions_taken_away_before_it_sent_their_writes() -> None:
    """A rebalance took the partition away while the batch waited for its decisions: it sends nothing
    there, and names the partition, whose input the worker then does not ack (`Ledger.confirm`)."""

    async def scenario() -> tuple[list[bytes | None], set[int], list[bytes | None], set[int]]:
        listings = table("listings")
        batch = Batch(None)
        written(batch, listings, (b"L-1", b"v1"))
        held = ([w.value for w in batch.leaves()], batch.given_up())
        listings.lost = {EVENT.message.partition}
        return *held, [w.value for w in batch.leaves()], batch.given_up()

    held_leaves, held_given_up, lost_leaves, lost_given_up = asyncio.run(scenario())
    assert (held_leaves, held_given_up) == ([b"v1"], set())
    assert (lost_leaves, lost_given_up) == ([], {1})


def test_a_key_in_the_store_is_read_from_it_and_a_missing_one_is_none() -> None:
    """`stored` bypasses Faust's `get` for the store's own lookup: it must still find what the store
    holds (a value stored by an earlier batch, or recovered from the changelog)."""

    async def scenario() -> tuple[bytes | None, bytes | None, bool]:
        listings = table("stored")
        _current_event.set(weakref.ref(EVENT))  # type: ignore[arg-type]
        listings.data[b"L-1"] = b"v1"  # as recovery writes it: straight into the store
        return listings.stored(b"L-1"), listings.get(b"L-2"), b"L-1" in listings

    have, missing, present = asyncio.run(scenario())
    assert (have, missing, present) == (b"v1", None, True)
