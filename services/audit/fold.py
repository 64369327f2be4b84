"""The ledger's fold, re-run over replayed listing events: what the ledger knew, and what each view was.

Events of one listing may sit in several topics (a court revokes a police listing
on `listings.court`; the backbone expires it on `listings.backbone`), so a replay
sees them in no guaranteed order across topics. The replica does what the ledger
does: `admission.judge` decides (apply, duplicate, hold until the gap fills, refuse)
and `evolve` applies, so the audit and the ledger agree by construction. Seals are
not re-checked per event here (that is `verify`, four times slower); callers skip the
positions the ledger refused, which its `rejected` records name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from services.audit.replay import Replayed
from services.core.admission import judge
from services.core.events import ListingEvent, ListingState
from services.core.listing import Decision, evolve, is_listing_event
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
    """Listing states folded from replayed events; `on_change` hears every applied step."""

    policy: Policy
    on_change: Callable[[Change], None] | None = None
    states: dict[str, ListingState] = field(default_factory=dict)
    held: dict[str, dict[int, Replayed]] = field(default_factory=dict)
    refused: list[tuple[Replayed, Decision]] = field(default_factory=list)

    def feed(self, item: Replayed) -> None:
        """Admit one event as the ledger would; applying it may release held successors."""
        if not is_listing_event(item.event):
            return  # the audit's replays read listing topics only: nothing else applies to a listing
        if self._decide(item, item.event):
            self._release(item.event.envelope.listing_id)

    def _decide(self, item: Replayed, event: ListingEvent) -> bool:
        """Apply, hold, refuse or drop (a duplicate) one event; True if it was applied."""
        env = event.envelope
        before = self.states.get(env.listing_id)
        decision = judge(before, event, self.policy)
        if decision.action == "hold":
            self.held.setdefault(env.listing_id, {})[env.version] = item
        elif decision.action == "refuse":
            self.refused.append((item, decision))
        elif decision.action == "apply":
            after = evolve(before, event)
            self.states[env.listing_id] = after
            if self.on_change is not None:
                self.on_change(Change(item, before, after, view_ops(before, after, self.policy)))
            return True
        return False

    def _release(self, listing: str) -> None:
        """Apply the held successors that now follow on, in version order."""
        waiting = self.held.get(listing, {})
        while (successor := waiting.pop(self.states[listing].envelope.version + 1, None)) is not None:
            if not is_listing_event(successor.event) or not self._decide(successor, successor.event):
                break
        if not waiting:
            self.held.pop(listing, None)

    def held_events(self) -> list[Replayed]:
        """Events still waiting for a predecessor the log does not hold (yet)."""
        return [item for waiting in self.held.values() for item in waiting.values()]
