"""Ed25519 checks of a replay in worker processes, while the reading thread decodes and hashes on.

A signature check costs more than a message's decode (libsodium, through PyNaCl: about 76 µs
here, against 40-60 µs to decode and validate a sealed event), so `verify` hands the signatures
out in chunks and takes the answers back in the order it handed them out: each event is judged
exactly as if checked in turn, only later. Every signature is still checked; none is skipped or
sampled. Processes, not threads: libsodium releases the GIL while it verifies, but each thread
must take it back after every signature, from a reading thread that holds it for its whole
5 ms switch interval; on two cores threads got 3,500-4,200 events/s where two processes got
4,400-5,500, and the reading process spends half the CPU an event (115 against 220 µs).
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

from services.core.sealing import SignatureClaim

T = TypeVar("T")
Fault = tuple[str, str] | None
CHUNK = 256  # signatures per task: a chunk's hand-over (pickled both ways) costs far less than its checks
WORKERS = 2
IN_FLIGHT = 8  # chunks handed out and not taken back yet: bounds what waits in memory


def _faults(claims: list[SignatureClaim]) -> list[Fault]:
    return [claim.fault() for claim in claims]


class SignatureChecks(Generic[T]):
    """Checks each item's signature claim in one of `workers` processes (spawned, never forked: a
    fork would copy librdkafka's threads); `on_checked(item, fault)` hears the answers in the order
    the items were added, on the caller's thread. `pool` replaces the processes (a test's threads)."""

    def __init__(
        self, on_checked: Callable[[T, Fault], None], workers: int = WORKERS, pool: Executor | None = None
    ) -> None:
        self.on_checked = on_checked
        spawn = multiprocessing.get_context("spawn")
        self.pool = pool if pool is not None else ProcessPoolExecutor(workers, mp_context=spawn)
        self.chunk: list[tuple[T, SignatureClaim]] = []
        self.out: deque[tuple[list[T], Future[list[Fault]]]] = deque()

    def add(self, item: T, claim: SignatureClaim) -> None:
        self.chunk.append((item, claim))
        if len(self.chunk) >= CHUNK:
            self._hand_out()
        while self.out and (self.out[0][1].done() or len(self.out) > IN_FLIGHT):
            self._take_back()

    def finish(self) -> None:
        """Wait for every signature added so far and report each."""
        self._hand_out()
        while self.out:
            self._take_back()

    def _hand_out(self) -> None:
        if self.chunk:
            items, claims = [item for item, _ in self.chunk], [claim for _, claim in self.chunk]
            self.out.append((items, self.pool.submit(_faults, claims)))
            self.chunk = []

    def _take_back(self) -> None:
        items, answers = self.out.popleft()
        for item, fault in zip(items, answers.result(), strict=True):
            self.on_checked(item, fault)

    def __enter__(self) -> SignatureChecks[T]:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
