"""A batch's signatures checked in threads ahead of their turn (`seals.Seals`) decide exactly as inline.

The worker opens a batch's messages as it arrives and verifies their signatures in a pool, then
hands each `Read` to `handler.handle`. These tests run a batch with bad messages among good ones
both ways and compare every message's outcome, and check the refusals, their order and reasons.
"""

from __future__ import annotations

import asyncio

import pytest

from services.core.events import Rejected
from services.core.policy import Policy
from services.core.sealing import seal
from services.ledger.handler import Context, Handled, handle
from services.ledger.record import Entry, Inbound
from services.ledger.seals import CHUNK, Seals
from tests.support.factory import Ledgerbook
from tests.unit.ledger.messages import TOPICS, inbound


def a_batch(book: Ledgerbook) -> tuple[list[Inbound], dict[int, str]]:
    """Twenty messages over three chunks: good issues and corrections (one read before its issue,
    so held, then released), and at known places a forged signature, an altered event, bytes that
    do not decode, and a forged event on another agency's topic (the gate speaks first)."""
    batch = [inbound(book.issue(f"L-{i:02d}")) for i in range(12)]
    batch[5] = inbound(seal(book.issue("L-X5"), "", book.keystore.private("tax-bureau")))
    batch[9] = inbound(book.issue("L-X9").model_copy(update={"case_ref": "changed after sealing"}))
    batch.append(inbound(book.issue("L-X12"), payload=b"\xc3\x01 not avro"))
    forged = seal(book.issue("L-X13"), "", book.keystore.private("tax-bureau"))
    batch.append(inbound(forged, topic=TOPICS.listings("tax-bureau")))
    batch.append(inbound(book.correct("L-01", legal_basis="corrected")))
    later = inbound(book.correct("L-02", legal_basis="corrected"))
    batch += [later, inbound(book.correct("L-02", legal_basis="again"))]
    batch[2], batch[15] = batch[15], batch[2]  # L-02's v2 before its issue: held until v1 applies
    batch += [inbound(book.issue(f"L-{i:02d}")) for i in range(12, 15)]
    refused = {5: "bad_signature", 9: "bad_hash", 12: "undecodable", 13: "wrong_topic"}
    return batch, refused


def decide(batch: list[Inbound], ctx: Context, seals: Seals | None) -> list[Handled]:
    """Each message's outcome, fed in order through tables of plain dicts; `seals` None: inline."""
    entries: dict[bytes, Entry] = {}
    held: dict[bytes, list[Inbound]] = {}

    async def run() -> list[Handled]:
        ahead = seals.start(batch, ctx) if seals is not None else [None] * len(batch)
        outcomes = []
        for msg, opened in zip(batch, ahead, strict=True):
            read = await opened.read() if opened is not None else None
            key = msg.key or b""
            outcome = handle(msg, entries.get(key), held.get(key, []), ctx, read)
            if outcome.entry is not None:
                entries[key] = outcome.entry
            held[key] = outcome.held
            outcomes.append(outcome)
        return outcomes

    return asyncio.run(run())


@pytest.mark.parametrize("threads", [2, 0])
def test_a_batch_checked_ahead_decides_each_message_as_inline(
    ctx: Context, trusted: tuple[Policy, Ledgerbook], threads: int
) -> None:
    book = Ledgerbook(trusted[1].keystore)
    batch, refused = a_batch(book)
    assert len(batch) > 2 * CHUNK
    inline = decide(batch, ctx, None)
    ahead = decide(batch, ctx, Seals(threads))
    for at, (one, other) in enumerate(zip(inline, ahead, strict=True)):
        assert (one.entry, one.held, one.applied) == (other.entry, other.held, other.applied), at
        assert one.out == other.out, at
    for at, outcome in enumerate(ahead):
        codes = [o.event.reason_code for o in outcome.out if isinstance(o.event, Rejected)]
        assert codes == ([refused[at]] if at in refused else []), at
        assert outcome.applied == (0 if at in refused or at == 2 else 2 if at == 15 else 1), at
    assert ahead[2].held and ahead[15].entry is not None and ahead[15].entry.state.envelope.version == 2
    assert ahead[16].entry is not None and ahead[16].entry.state.envelope.version == 3
    forged = next(o.event for o in ahead[5].out if isinstance(o.event, Rejected))
    assert forged.reason == "the signature is not court's: forged or unsigned"


def test_signatures_are_checked_in_the_pool_and_none_is_skipped(
    ctx: Context, trusted: tuple[Policy, Ledgerbook]
) -> None:
    book = Ledgerbook(trusted[1].keystore)
    batch, refused = a_batch(book)

    async def opened() -> list[bool]:
        ahead = Seals(2).start(batch, ctx)
        return [a.checks is not None for a in ahead]

    in_pool = asyncio.run(opened())
    # Every decodable message whose hash holds has its signature checked in the pool, the gate's
    # refusal (13) too: the verdict waits for its turn, and the gate's reason comes first there.
    assert [at for at, pooled in enumerate(in_pool) if not pooled] == [9, 12]
    assert refused[9] == "bad_hash" and refused[12] == "undecodable"
