"""Property: over random mixes of valid and invalid commands (and retries), a refused command
never reaches a topic and an accepted one reaches it exactly once."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.core.commands import AnyCommand
from services.core.errors import AccessDenied, RuleViolation
from services.publisher.client import Publisher
from tests.integration.publisher.conftest import Backbone
from tests.unit.publisher import samples
from tests.unit.publisher.cases import ISSUE_REFUSALS

ISSUES = [{}, {}, *(changes for _, changes in ISSUE_REFUSALS)]  # valid ones twice as likely
CORRECTIONS = [{"measures": ["flight_ban"]}, {"legal_basis": "revised basis"}, {"measures": ["moon_ban"]}]
Action = tuple[Any, ...]

actions = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), st.sampled_from(ISSUES)),
        st.tuples(st.just("correct"), st.integers(0, 5), st.integers(-1, 1), st.sampled_from(CORRECTIONS)),
        st.tuples(st.just("revoke"), st.integers(0, 5), st.integers(-1, 1)),
        st.tuples(st.just("retry"), st.integers(0, 10)),
    ),
    min_size=1,
    max_size=8,
)


class Run:
    """One example's commands and what became of each, by event id."""

    def __init__(self, backbone: Backbone, publisher: Publisher) -> None:
        self.backbone, self.publisher = backbone, publisher
        self.listings: list[str] = []
        self.sent: list[AnyCommand] = []
        self.accepted: set[str] = set()
        self.refused: set[str] = set()

    def command(self, action: Action) -> AnyCommand | None:
        kind, *args = action
        request = {"request_id": str(uuid.uuid4())}
        if kind == "issue":
            return samples.issue(**args[0], **request)
        if kind == "retry":
            return self.sent[args[0] % len(self.sent)] if self.sent else None
        if not self.listings:
            return None
        listing = self.listings[args[0] % len(self.listings)]
        current = self.publisher.current(listing)
        version = max(1, (current.envelope.version if current else 1) + args[1])
        if kind == "correct":
            return samples.correct(listing, version, **args[2]).model_copy(update=request)
        return samples.revoke(listing, version).model_copy(update=request)

    def published_count(self) -> int:
        """Events in the listing topics: only this run's publisher writes there while it runs."""
        return self.backbone.records_in(self.backbone.listing_topics)

    def step(self, command: AnyCommand) -> None:
        before = self.published_count()
        try:
            receipt = self.publisher.submit(command)
        except (RuleViolation, AccessDenied):  # a rule, or another agency's name (the court's key)
            assert command.event_id not in self.accepted
            self.refused.add(command.event_id)
            assert self.published_count() == before, "a refused command reached a topic"
            return
        published_now = receipt.event_id not in self.accepted
        assert receipt.duplicate is not published_now
        assert self.published_count() == before + int(published_now)
        self.accepted.add(receipt.event_id)
        if receipt.event_type == "ListingIssued" and published_now:
            self.listings.append(receipt.listing_id)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=actions)
def test_refused_commands_never_reach_a_topic_and_accepted_ones_do_once(
    backbone: Backbone, plan: list[Action]
) -> None:
    run = Run(backbone, backbone.publisher() if not backbone.opened else backbone.opened[0])
    for action in plan:
        command = run.command(action)
        if command is not None:
            run.sent.append(command)
            run.step(command)
    in_log = Counter(d.event.envelope.event_id for d in backbone.published(*{c.listing_id for c in run.sent}))
    assert all(in_log[event_id] == 1 for event_id in run.accepted)
    assert not [event_id for event_id in run.refused - run.accepted if in_log[event_id]]
