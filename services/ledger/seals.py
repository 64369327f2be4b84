"""A batch's signatures checked in threads while the loop's thread decides: `Seals.start`.

Ed25519 verification is the costliest check the ledger makes of a message (about a fifth of
the worker's CPU), and libsodium (through cffi) releases the GIL while it verifies. So as a batch arrives,
each message is opened on the loop's thread (`handler.opened`: decoded, hash and key checked)
and its signature handed to a small pool, a chunk of messages per task; the worker awaits each
message's `Read` only when its turn comes, by when it is normally done. Every signature is still
checked, and each message is judged on the verdict it would have had inline (`handler.parse`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from services.core.errors import ContractError
from services.core.sealing import SignatureClaim
from services.core.serde import Decoded
from services.ledger.handler import Context, Fault, Read, opened
from services.ledger.record import Inbound

CHUNK = 8  # signatures per task: a hand-over costs ~20 µs, a signature 60-150 µs


@dataclass(slots=True)
class Ahead:
    """One message opened ahead of its turn; its signature's verdict, once `checks` answers."""

    decoded: Decoded | ContractError
    claim: Fault | SignatureClaim
    checks: Future[list[Fault]] | None = None
    index: int = 0  # of its claim in the chunk `checks` verifies

    async def read(self) -> Read:
        """The message as `handler.parse` takes it: waits for its chunk's signatures if need be."""
        if self.checks is None:
            assert not isinstance(self.claim, SignatureClaim)
            return Read(self.decoded, self.claim)
        done = self.checks.result() if self.checks.done() else await asyncio.wrap_future(self.checks)
        return Read(self.decoded, done[self.index])


def _faults(claims: list[SignatureClaim]) -> list[Fault]:
    return [claim.fault() for claim in claims]


class Seals:
    """The worker's pool of signature checks; `threads` 0 checks each one on the loop's thread."""

    def __init__(self, threads: int) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="ledger-seals") if threads else None

    def start(self, messages: Sequence[Inbound], ctx: Context) -> list[Ahead]:
        """Open each message and start checking its signature; one `Ahead` per message, in order."""
        ahead: list[Ahead] = []
        chunk: list[tuple[int, SignatureClaim]] = []
        for msg in messages:
            decoded, claim = opened(msg, ctx)
            if self.pool is None and isinstance(claim, SignatureClaim):
                claim = claim.fault()
            ahead.append(Ahead(decoded, claim))
            if isinstance(claim, SignatureClaim):
                chunk.append((len(ahead) - 1, claim))
                if len(chunk) == CHUNK:
                    self._hand_out(chunk, ahead)
                    chunk = []
        self._hand_out(chunk, ahead)
        return ahead

    def _hand_out(self, chunk: list[tuple[int, SignatureClaim]], ahead: list[Ahead]) -> None:
        if not chunk:
            return
        assert self.pool is not None
        checks = self.pool.submit(_faults, [claim for _, claim in chunk])
        for index, (at, _) in enumerate(chunk):
            ahead[at].checks, ahead[at].index = checks, index
