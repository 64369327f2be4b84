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
from typing import Literal, cast

from services.audit.replay import Replayed
from services.core.events import ListingEvent, ListingState
from services.core.fold import Listing, offer
from services.core.listing import Decision, is_listing_event
from services.core.policy import Policy
from services.core.views import LIVE

Op = Literal["upsert", "delete"]


@dataclass(frozen=True)
class Change:
    """One applied listing event: the listing before and after, and what each agency's view must do."""

    item: Replayed
    before: ListingState | None
    after: ListingState
    views: dict[str, Op]


@dataclass
class Holders:
    """Which enforcers' views hold a live listing with given measures, remembered per set of measures.

    The policy's answer (`views.holds`) costs a walk over measures and agencies; a replay
    asks it twice per event, for a handful of distinct measure sets."""

    policy: Policy
    known: dict[tuple[str, ...], frozenset[str]] = field(default_factory=dict)

    def of(self, state: ListingState | None) -> frozenset[str]:
        if state is None or state.status not in LIVE:
            return frozenset()
        key = tuple(state.measures)
        found = self.known.get(key)
        if found is None:
            found = frozenset(self.policy.entitled_agencies(key) & set(self.policy.enforcers))
            self.known[key] = found
        return found


def view_ops(
    before: ListingState | None, after: ListingState, policy: Policy, holders: Holders | None = None
) -> dict[str, Op]:
    """Each agency whose view this step changes, and how (the same rule as `views.view_change`)."""
    holders = holders if holders is not None else Holders(policy)
    now, then = holders.of(after), holders.of(before)
    return {agency: "upsert" if agency in now else "delete" for agency in sorted(now | then)}


@dataclass
class LedgerReplica:
    """Listing states folded from replayed events by `core.fold`; `on_change` hears every applied step."""

    policy: Policy
    on_change: Callable[[Change], None] | None = None
    listings: dict[str, Listing[Replayed]] = field(default_factory=dict)
    refused: list[tuple[Replayed, Decision]] = field(default_factory=list)
    holders: Holders = field(init=False)

    def __post_init__(self) -> None:
        self.holders = Holders(self.policy)

    @property
    def states(self) -> dict[str, ListingState]:
        """Every listing folded so far, by id (a listing whose events are all held has none yet)."""
        return {lid: listing.state for lid, listing in self.listings.items() if listing.state is not None}

    def feed(self, item: Replayed) -> None:
        """Admit one event as the ledger would; applying it may release held successors."""
        if not is_listing_event(item.event):
            return  # the audit's replays read listing topics only: nothing else applies to a listing
        listing_id = item.event.envelope.listing_id
        listing = self.listings.get(listing_id)
        if listing is None:  # not `setdefault`: that would make a Listing for every event
            listing = self.listings[listing_id] = Listing()
        offer(listing, item, self.policy, self)

    def event_of(self, item: Replayed) -> ListingEvent | None:
        """Its listing event: `feed` lets no other kind into the fold."""
        return cast(ListingEvent, item.event)

    def on_applied(self, item: Replayed, before: ListingState | None, after: ListingState) -> None:
        if self.on_change is not None:
            self.on_change(Change(item, before, after, view_ops(before, after, self.policy, self.holders)))

    def on_duplicate(self, item: Replayed, event: ListingEvent, state: ListingState | None) -> None:
        """The ledger applied it once already: nothing changes."""

    def on_refused(self, item: Replayed, event: ListingEvent, decision: Decision) -> None:
        self.refused.append((item, decision))

    def held_events(self) -> list[Replayed]:
        """Events still waiting for a predecessor the log does not hold (yet)."""
        held = (item for listing in self.listings.values() for item in listing.held)
        return sorted(held, key=lambda item: item.position)
