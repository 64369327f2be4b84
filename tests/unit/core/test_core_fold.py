"""The one fold with holding (`core.fold.offer`), over a message type of the test's own.

The ledger folds raw messages and the audit decoded ones; the fold must not care.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.core.events import Event, ListingEvent, ListingState
from services.core.fold import Listing, offer
from services.core.listing import Decision, is_listing_event
from services.core.policy import Policy
from tests.support.factory import Ledgerbook, policy_with_keys


@dataclass(frozen=True)
class Note:
    """A message as small as the fold allows: an event and a label to tell rivals apart."""

    label: str
    event: Event | None


@dataclass
class Heard:
    """Every verdict, in order, as (verdict, label)."""

    said: list[tuple[str, str]] = field(default_factory=list)

    def event_of(self, msg: Note) -> ListingEvent | None:
        if msg.event is None or not is_listing_event(msg.event):
            self.said.append(("unreadable", msg.label))
            return None
        return msg.event

    def on_applied(self, msg: Note, before: ListingState | None, after: ListingState) -> None:
        self.said.append(("applied", msg.label))

    def on_duplicate(self, msg: Note, event: ListingEvent, state: ListingState | None) -> None:
        self.said.append(("duplicate", msg.label))

    def on_refused(self, msg: Note, event: ListingEvent, decision: Decision) -> None:
        self.said.append((f"refused {decision.code}", msg.label))


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Policy, Ledgerbook]:
    policy, keystore = policy_with_keys(tmp_path)
    return policy, Ledgerbook(keystore)


def test_messages_read_before_their_predecessor_are_held_then_applied_in_order(
    setup: tuple[Policy, Ledgerbook],
) -> None:
    policy, book = setup
    issued, objected, revoked = book.issue("L-1"), book.object("L-1"), book.revoke("L-1")
    listing: Listing[Note] = Listing()
    heard = Heard()
    assert offer(listing, Note("v3", revoked), policy, heard) == 0
    assert offer(listing, Note("v2", objected), policy, heard) == 0
    assert [m.label for m in listing.held] == ["v3", "v2"]
    assert offer(listing, Note("v1", issued), policy, heard) == 3
    assert heard.said == [("applied", "v1"), ("applied", "v2"), ("applied", "v3")]
    assert listing.held == [] and listing.state is not None and listing.state.status == "revoked"


def test_rival_versions_are_both_held_and_the_first_to_arrive_wins(setup: tuple[Policy, Ledgerbook]) -> None:
    policy, book = setup
    issued = book.issue("L-1")
    head = book.heads["L-1"]
    corrected = book.correct("L-1", severity="severe")  # version 2
    book.heads["L-1"] = head
    revoked = book.revoke("L-1")  # also version 2, linked to the same head
    listing: Listing[Note] = Listing()
    heard = Heard()
    offer(listing, Note("correction", corrected), policy, heard)
    offer(listing, Note("revocation", revoked), policy, heard)
    assert [m.label for m in listing.held] == ["correction", "revocation"]  # neither replaces the other
    offer(listing, Note("issue", issued), policy, heard)
    assert heard.said == [
        ("applied", "issue"),
        ("applied", "correction"),
        ("refused version_conflict", "revocation"),
    ]
    assert listing.held == [] and listing.state is not None and listing.state.status == "active"


def test_a_message_offered_again_while_held_is_held_once(setup: tuple[Policy, Ledgerbook]) -> None:
    policy, book = setup
    book.issue("L-1")
    revoked = Note("v2", book.revoke("L-1"))
    listing: Listing[Note] = Listing()
    offer(listing, revoked, policy, Heard())
    offer(listing, revoked, policy, Heard())
    assert listing.held == [revoked]


def test_an_unreadable_message_is_neither_held_nor_in_the_way(setup: tuple[Policy, Ledgerbook]) -> None:
    policy, book = setup
    issued, revoked = book.issue("L-1"), book.revoke("L-1")
    listing: Listing[Note] = Listing()
    heard = Heard()
    offer(listing, Note("v2", revoked), policy, heard)
    offer(listing, Note("junk", None), policy, heard)
    assert offer(listing, Note("v1", issued), policy, heard) == 2
    assert heard.said == [("unreadable", "junk"), ("applied", "v1"), ("applied", "v2")]
