"""The publisher's decisions on an in-memory log: `decide` then `evolve`, no broker, no keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.core.commands import AnyCommand
from services.core.events import ListingEvent, ListingState
from services.core.listing import evolve
from services.core.policy import Policy, load_policy
from services.publisher.build import decide
from tests.unit.publisher.samples import NOW, PSEUDONYM_KEY


@dataclass
class Desk:
    policy: Policy = field(default_factory=load_policy)
    states: dict[str, ListingState] = field(default_factory=dict)

    def submit(self, command: AnyCommand) -> ListingEvent:
        state = self.states.get(command.listing_id)
        event = decide(command, state, NOW, self.policy, PSEUDONYM_KEY)
        self.states[command.listing_id] = evolve(state, event)
        return event
