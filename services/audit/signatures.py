"""Ed25519 checks of a replay in worker threads, while the reading thread decodes and hashes on.

A signature check costs more than a message's decode (libsodium, through PyNaCl: about 76 µs
here, against 40-60 µs to decode and validate a sealed event), and the library releases the GIL
while it verifies, so `verify` hands the signatures to threads in chunks and takes the answers
back in the order it handed them out: each event is judged exactly as if checked in turn,
only later. Every signature is still checked; none is skipped or sampled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

from services.core.sealing import SignatureClaim

T = TypeVar("T")
Fault = tuple[str, str] | None
CHUNK = 256  # signatures per task: a task's hand-over costs ~20 µs, a signature ~60 µs
THREADS = 2
IN_FLIGHT = 8  # chunks handed out and not taken back yet: bounds what waits in memory


def _faults(claims: list[SignatureClaim]) -> list[Fault]:
    return [claim.fault() for claim in claims]


class SignatureChecks(Generic[T]):
    """Checks each item's signature claim in a thread; `on_checked(item, fault)` hears the
    answers in the order the items were added, on the caller's thread."""

    def __init__(self, on_checked: Callable[[T, Fault], None], threads: int = THREADS) -> None:
        self.on_checked = on_checked
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="signatures")
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
