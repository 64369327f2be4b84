"""What the publisher knows of the ledger's decisions: listing states and refusals. No Kafka here.

The publisher decides a command against the listing as the ledger holds it (the
compacted `ledger` topic: version, hash-chain head, issuer, content) and reports
the ledger's verdict on its event: admitted once the listing's state lists the
event's id, refused once `rejected` carries it. The reader feeds this book.

A refusal counts only for an event its author wrote on its own listing topic (the
one topic an agency can write, by ACL), keyed by that agency and the event id: an
agency cannot forge a refusal of another agency's event by reusing its id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from services.core.errors import ContractError
from services.core.events import ListingState, Rejected
from services.core.serde import decode


class Receipt(BaseModel):
    """What a caller gets back: the event that stands for the command, and the ledger's word on it.

    `status` is `admitted` (the ledger took it: the listing is now at `version`) or
    `undecided` (the broker holds it, the ledger has not ruled yet: ask again at `ask_again`).
    `topic`/`partition`/`offset` say where this process wrote it; a retry answered from the
    ledger does not know them.
    """

    model_config = ConfigDict(frozen=True)

    status: Literal["admitted", "undecided"] = "admitted"
    listing_id: str
    version: int
    event_id: str
    event_type: str
    agency: str
    request_id: str | None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    objection_id: str | None = None
    exemption_id: str | None = None
    duplicate: bool = False
    ask_again: str | None = None


@dataclass(frozen=True)
class Refusal:
    """The ledger's refusal of one event: its reason code and sentence, as `rejected` carries them."""

    listing_id: str
    code: str
    reason: str


@dataclass
class LedgerBook:
    """The latest state of every listing, and every refusal of an event on its author's topic."""

    authors: dict[str, str]  # listing topic -> the only agency that may write it
    states: dict[str, ListingState] = field(default_factory=dict)
    refusals: dict[tuple[str, str], Refusal] = field(default_factory=dict)
    listing_of: dict[str, str] = field(default_factory=dict)  # event id -> its listing
    ignored: int = 0

    def state(self, listing_id: str) -> ListingState | None:
        return self.states.get(listing_id)

    def take_state(self, state: ListingState) -> None:
        """A record of `ledger`: never go back to an older version (a re-stated or replayed one)."""
        listing_id = state.envelope.listing_id
        known = self.states.get(listing_id)
        if known is not None and known.envelope.version > state.envelope.version:
            return
        self.states[listing_id] = state
        for event_id in state.event_ids[len(known.event_ids) if known else 0 :]:
            self.listing_of[event_id] = listing_id

    def take_rejected(self, record: Rejected) -> None:
        """A record of `rejected`: kept if it refuses a listing event written on its author's topic."""
        author = self.authors.get(record.source_topic)
        try:
            refused = decode(record.payload, record.source_topic) if author else None
        except ContractError:
            refused = None  # undecodable bytes: no event id, nobody's command
        if refused is None or refused.envelope.agency != author:
            self.ignored += 1
            return
        env = refused.envelope
        self.refusals.setdefault(
            (env.agency, env.event_id), Refusal(env.listing_id, record.reason_code, record.reason)
        )

    def admitted(self, listing_id: str, event_id: str) -> ListingState | None:
        """The listing's state if the ledger admitted `event_id` into it."""
        state = self.states.get(listing_id)
        return state if state is not None and event_id in state.event_ids else None

    def refusal(self, agency: str, listing_id: str, event_id: str) -> Refusal | None:
        """The ledger's refusal of `agency`'s event `event_id` on `listing_id`, if it refused it."""
        refusal = self.refusals.get((agency, event_id))
        return refusal if refusal is not None and refusal.listing_id == listing_id else None

    def version_of(self, listing_id: str, event_id: str) -> int:
        """The version an admitted event gave its listing (its place in the history, from 1)."""
        return self.states[listing_id].event_ids.index(event_id) + 1
