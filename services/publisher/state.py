"""The publisher's read-your-writes view of every listing, folded from the listing topics.

The publisher decides a command against the listing as the log says it is, so it
folds the listing topics with the ledger's own judgement (`admission.gate`, then
`admission.judge`), then `listing.evolve`. Events of one listing may sit in several topics (a court
corrects a police listing on `listings.court`), so an event whose predecessor has
not been read yet is held until it has. No Kafka here: the reader feeds it.

It also remembers, per (agency, request_id), where each event landed: a retried
command, even after a restart, is answered from the log instead of published again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from services.core.admission import gate, judge
from services.core.events import ExemptionGranted, ListingEvent, ListingState, ObjectionFiled
from services.core.listing import evolve, is_listing_event
from services.core.policy import Policy
from services.core.serde import Decoded


@dataclass(frozen=True)
class Position:
    topic: str
    partition: int
    offset: int


class Receipt(BaseModel):
    """What a caller gets back: which event now stands for the command, and where it is in the log."""

    model_config = ConfigDict(frozen=True)

    listing_id: str
    version: int
    event_id: str
    event_type: str
    agency: str
    request_id: str | None
    topic: str
    partition: int
    offset: int
    objection_id: str | None = None
    exemption_id: str | None = None
    duplicate: bool = False


def receipt_of(event: ListingEvent, at: Position) -> Receipt:
    env = event.envelope
    return Receipt(
        listing_id=env.listing_id,
        version=env.version,
        event_id=env.event_id,
        event_type=type(event).__name__,
        agency=env.agency,
        request_id=env.request_id,
        topic=at.topic,
        partition=at.partition,
        offset=at.offset,
        objection_id=event.objection_id if isinstance(event, ObjectionFiled) else None,
        exemption_id=event.exemption.exemption_id if isinstance(event, ExemptionGranted) else None,
    )


@dataclass
class ListingBook:
    """Listing states and receipts, from every listing event read so far."""

    policy: Policy
    authors: dict[str, str] = field(default_factory=dict)  # listing topic -> the agency that writes it
    states: dict[str, ListingState] = field(default_factory=dict)
    held: dict[str, dict[int, list[ListingEvent]]] = field(default_factory=dict)
    receipts: dict[tuple[str, str], Receipt] = field(default_factory=dict)
    ignored: int = 0

    def state(self, listing_id: str) -> ListingState | None:
        return self.states.get(listing_id)

    def receipt(self, agency: str, request_id: str) -> Receipt | None:
        return self.receipts.get((agency, request_id))

    def stands(self, receipt: Receipt) -> bool:
        """True if the receipt's event is part of its listing's history (not refused, not held)."""
        state = self.states.get(receipt.listing_id)
        return state is not None and receipt.event_id in state.event_ids

    def record_decoded(self, decoded: Decoded, at: Position, key: bytes) -> None:
        """An event read from a topic: counted only if the ledger would take it from there."""
        event = decoded.event
        if gate(decoded, at.topic, key, self.authors, self.policy) is not None or not is_listing_event(event):
            self.ignored += 1
            return
        self.record(event, at)

    def record(self, event: ListingEvent, at: Position) -> None:
        """An event known to be in the log at `at` (read back, or just confirmed by the broker)."""
        env = event.envelope
        if env.request_id:
            self.receipts.setdefault((env.agency, env.request_id), receipt_of(event, at))
        if self._offer(event):
            self._release(env.listing_id)

    def _offer(self, event: ListingEvent) -> bool:
        """Apply `event` if the ledger would; hold it if its predecessor is missing. True if applied."""
        listing_id = event.envelope.listing_id
        before = self.states.get(listing_id)
        decision = judge(before, event, self.policy)
        if decision.action == "hold":
            self.held.setdefault(listing_id, {}).setdefault(event.envelope.version, []).append(event)
        elif decision.action == "refuse":
            self.ignored += 1
        elif decision.action == "apply":
            self.states[listing_id] = evolve(before, event)
            return True
        return False

    def _release(self, listing_id: str) -> None:
        """Apply held successors that now follow on; the first of rival versions wins, as in the log."""
        waiting = self.held.get(listing_id, {})
        while waiting:
            candidates = waiting.pop(self.states[listing_id].envelope.version + 1, [])
            if not any(self._offer(event) for event in candidates):
                break
        if not waiting:
            self.held.pop(listing_id, None)
