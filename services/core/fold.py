"""The one fold of a listing's events, with holding: what the ledger does, and what the audit re-runs.

Events of one listing may arrive out of order (a court's revocation on `listings.court`
read before the police's issue on `listings.police`). `offer` judges each message
against the listing's state (`admission.judge`): it applies, is a duplicate, is held
until the version before it is folded, or is refused. Each applied message may be what
a held one waited for, so held messages are judged again, in the order they arrived,
until none of them applies.

Rival versions: two messages that claim the same version of a listing are both held,
never one in place of the other. When their turn comes, the one that arrived first is
judged first; once it applies, the other is judged against the listing it changed (a
duplicate of it, or refused, like any change against a version it has not seen). Nothing
is dropped unheard: every message ends applied, duplicate, refused, or still held.

The caller (the ledger's handler over raw messages, the audit's replica over decoded
ones) says how to read a message and what to do with each verdict: publish, record,
refuse into `rejected`. The fold itself imports nothing from Kafka or Avro.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from services.core.admission import judge
from services.core.events import ListingEvent, ListingState
from services.core.listing import Action, Decision
from services.core.policy import Policy

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)


class Verdicts(Protocol[M_contra]):
    """What a caller of the fold does with a message: read it, and act on each verdict."""

    def event_of(self, msg: M_contra) -> ListingEvent | None:
        """The message's listing event; None when it is not one to judge (the caller said why)."""

    def on_applied(self, msg: M_contra, before: ListingState | None, after: ListingState) -> None: ...

    def on_duplicate(self, msg: M_contra, event: ListingEvent, state: ListingState | None) -> None: ...

    def on_refused(self, msg: M_contra, event: ListingEvent, decision: Decision) -> None: ...


@dataclass
class Listing(Generic[M]):
    """One listing as the fold sees it: its state, and the messages held until their turn."""

    state: ListingState | None = None
    held: list[M] = field(default_factory=list)


def offer(listing: Listing[M], msg: M, policy: Policy, verdicts: Verdicts[M]) -> int:
    """Judge `msg` against `listing`; if it applies, release the held messages it lets follow.

    Returns how many messages were applied (`msg` and those it released)."""
    if _judge(listing, msg, policy, verdicts) != "apply":
        return 0
    applied, progress = 1, True
    while progress and listing.held:
        progress = False
        for waiting in list(listing.held):
            listing.held.remove(waiting)
            if _judge(listing, waiting, policy, verdicts) == "apply":
                applied, progress = applied + 1, True
    return applied


def _judge(listing: Listing[M], msg: M, policy: Policy, verdicts: Verdicts[M]) -> Action | None:
    event = verdicts.event_of(msg)
    if event is None:
        return None
    decision = judge(listing.state, event, policy)
    if decision.action == "apply":
        assert decision.after is not None  # `judge` hands over the listing an applied event makes
        before, listing.state = listing.state, decision.after
        verdicts.on_applied(msg, before, listing.state)
    elif decision.action == "duplicate":
        verdicts.on_duplicate(msg, event, listing.state)
    elif decision.action == "hold":
        if msg not in listing.held:  # a message read again (after a crash) is held once
            listing.held.append(msg)
    else:
        verdicts.on_refused(msg, event, decision)
    return decision.action
