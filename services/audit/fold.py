"""The ledger's fold, re-run over replayed listing events: what the ledger knew, and what each view was.

Events of one listing may sit in several topics (a court revokes a police listing
on `listings.court`; the backbone expires it on `listings.backbone`), so a replay
sees them in no guaranteed order across topics. The replica runs the ledger's own fold
(`core.fold.offer`: judge, apply, hold until the gap fills, release in turn, the same rule
for rival versions), so the audit and the ledger agree by construction. Seals are
not re-checked per event here (that is `verify`, four times slower); callers skip the
positions the ledger refused, which its `rejected` records name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from services.audit.replay import Replayed
from services.core.events import ListingEvent, ListingState
from services.core.fold import Listing, offer
from services.core.listing import Decision, is_listing_event
from services.core.policy import Policy
from services.core.views import holds

Op = Literal["upsert", "delete"]


@dataclass(frozen=True)
class Change:
    """One applied listing event: the listing before and after, and what each agency's view must do."""

    item: Replayed
    before: ListingState | None
    after: ListingState
    views: dict[str, Op]


def view_ops(before: ListingState | None, after: ListingState, policy: Policy) -> dict[str, Op]:
    """Each agency whose view this step changes, and how (the same rule as `views.view_change`)."""
    measures = [*(before.measures if before is not None else []), *after.measures]
    ops: dict[str, Op] = {}
    for agency in sorted(policy.entitled_agencies(measures) & set(policy.enforcers)):
        if holds(after, agency, policy):
            ops[agency] = "upsert"
        elif holds(before, agency, policy):
            ops[agency] = "delete"
    return ops


@dataclass
class LedgerReplica:
    """Listing states folded from replayed events by `core.fold`; `on_change` hears every applied step."""

    policy: Policy
    on_change: Callable[[Change], None] | None = None
    listings: dict[str, Listing[Replayed]] = field(default_factory=dict)
    refused: list[tuple[Replayed, Decision]] = field(default_factory=list)

    @property
    def states(self) -> dict[str, ListingState]:
        """Every listing folded so far, by id (a listing whose events are all held has none yet)."""
        return {lid: listing.state for lid, listing in self.listings.items() if listing.state is not None}

    def feed(self, item: Replayed) -> None:
        """Admit one event as the ledger would; applying it may release held successors."""
        if not is_listing_event(item.event):
            return  # the audit's replays read listing topics only: nothing else applies to a listing
        listing = self.listings.setdefault(item.event.envelope.listing_id, Listing())
        offer(listing, item, self.policy, self)

    def event_of(self, item: Replayed) -> ListingEvent | None:
        return item.event if is_listing_event(item.event) else None

    def on_applied(self, item: Replayed, before: ListingState | None, after: ListingState) -> None:
        if self.on_change is not None:
            self.on_change(Change(item, before, after, view_ops(before, after, self.policy)))

    def on_duplicate(self, item: Replayed, event: ListingEvent, state: ListingState | None) -> None:
        """The ledger applied it once already: nothing changes."""

    def on_refused(self, item: Replayed, event: ListingEvent, decision: Decision) -> None:
        self.refused.append((item, decision))

    def held_events(self) -> list[Replayed]:
        """Events still waiting for a predecessor the log does not hold (yet)."""
        return [item for listing in self.listings.values() for item in listing.held]
