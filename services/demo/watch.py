"""The demo's eyes on the backbone: acknowledgements and findings as they arrive, with a deadline."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from services.core.connection import KafkaConnection
from services.core.errors import ContractError
from services.core.events import CopyApplied, Event, Finding
from services.core.kafka import consumer
from services.core.serde import decode
from services.demo.drill import Children, DrillError
from services.reconciler.findings import RESOLVED
from services.reconciler.kafkalog import from_the_start

WAIT_S = 90.0  # generous: the ledger's first start on a busy machine is the slow step


class Watch:
    """Reads `copies.applied` and `findings` from the start, keeping every event it has seen."""

    def __init__(self, connection: KafkaConnection, topics: list[str], children: Children) -> None:
        self.children = children
        self.reader = consumer(connection, connection.group(f"demo-watch-{uuid.uuid4()}"))
        self.reader.assign(from_the_start(self.reader, topics))
        self.seen: list[Event] = []

    def until(self, wanted: Callable[[Event], bool], what: str) -> Event:
        """The first event seen that is `wanted`, reading on until one arrives (or the deadline)."""
        found = self._read_until(lambda: next((e for e in self.seen if wanted(e)), None), what)
        assert isinstance(found, Event)
        return found

    def resolved(self, kind: str) -> None:
        """Read on until every finding of `kind` seen so far is closed by a `resolved` finding (the
        reconciler closes a digest drift once the copy's next digest agrees with its rows)."""

        def all_closed() -> bool | None:
            findings = [e for e in self.seen if isinstance(e, Finding)]
            closed = {f.detail.rsplit(" ", 1)[-1] for f in findings if f.kind == RESOLVED}
            return all(f.finding_id in closed for f in findings if f.kind == kind) or None

        self._read_until(all_closed, f"every {kind} finding to be resolved")

    def _read_until(self, done: Callable[[], object | None], what: str) -> object:
        """Read the topics until `done()` answers something other than None; that answer."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            answer = done()
            if answer is not None:
                return answer
            self.children.check()
            for msg in self.reader.consume(num_messages=100, timeout=0.2):
                if msg.error() is None:
                    with_event = _decoded(msg.value())
                    self.seen += [with_event] if with_event else []
        raise DrillError(f"waited {WAIT_S:.0f} s for {what}; see the logs")

    def applied(self, agency: str, listing_id: str, version: int) -> CopyApplied:
        def match(e: Event) -> bool:
            return isinstance(e, CopyApplied) and e.copy_agency == agency and (
                e.envelope.listing_id, e.envelope.version) == (listing_id, version)  # fmt: skip

        found = self.until(match, f"{agency}'s copy to apply v{version}")
        assert isinstance(found, CopyApplied)
        return found

    def finding(self, agency: str, listing_id: str, kinds: tuple[str, ...]) -> Finding:
        def match(e: Event) -> bool:
            if not isinstance(e, Finding):
                return False
            return e.copy_agency == agency and e.envelope.listing_id == listing_id and e.kind in kinds

        found = self.until(match, f"a {'/'.join(kinds)} finding")
        assert isinstance(found, Finding)
        return found

    def close(self) -> None:
        self.reader.close()


def _decoded(value: bytes | None) -> Event | None:
    try:
        return decode(value, "demo")
    except ContractError:
        return None
