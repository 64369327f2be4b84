"""Against the real broker, every refused command publishes nothing at all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.core.commands import AnyCommand
from services.core.errors import Forbidden, RuleViolation
from tests.integration.publisher.conftest import Backbone
from tests.unit.publisher import samples
from tests.unit.publisher.cases import CHANGE_REFUSALS, ISSUE_REFUSALS, Step


@pytest.mark.parametrize(("code", "changes"), ISSUE_REFUSALS, ids=[c for c, _ in ISSUE_REFUSALS])
def test_a_refused_issue_reaches_no_topic(backbone: Backbone, code: str, changes: dict[str, Any]) -> None:
    backbone.publisher().issue(samples.issue())  # the topics are live and take valid commands
    command = samples.issue(**changes)
    with pytest.raises(RuleViolation) as refused:
        backbone.publisher(agency=command.agency).issue(command)  # its own agency's publisher
    assert refused.value.code == code
    assert backbone.published(command.listing_id) == []


@pytest.mark.parametrize(("code", "steps"), CHANGE_REFUSALS, ids=[c for c, _ in CHANGE_REFUSALS])
def test_a_refused_change_reaches_no_topic(
    backbone: Backbone, code: str, steps: Callable[[str], list[Step]]
) -> None:
    publisher = backbone.publisher()
    listing = publisher.issue(samples.issue()).listing_id
    *preparation, last = steps(listing)
    done: list[Any] = []
    for step in preparation:
        done.append(publisher.submit(step(done)))
    before = backbone.published(listing)
    assert len(before) == 1 + len(preparation)
    command = last(done)
    with pytest.raises(RuleViolation) as refused:
        backbone.publisher(agency=command.agency).submit(command)  # its own agency's publisher
    assert refused.value.code == code
    assert len(backbone.published(listing)) == len(before)


def test_a_command_in_another_agencys_name_is_refused_before_anything_is_sent(backbone: Backbone) -> None:
    court = backbone.publisher()
    listing = court.issue(samples.issue()).listing_id
    posing: list[AnyCommand] = [
        samples.issue(agency="luoshan-police", category="public_security_risk", details={}),
        samples.revoke(listing, 1, agency="luoshan-police"),
    ]
    for command in posing:
        with pytest.raises(Forbidden, match="not_your_agency"):
            court.submit(command)
    assert len(backbone.published(listing, posing[0].listing_id)) == 1


def test_a_request_id_reused_for_another_command_is_refused(backbone: Backbone) -> None:
    publisher = backbone.publisher()
    issue = samples.issue()
    publisher.issue(issue)
    reuse = samples.revoke(issue.listing_id, 1).model_copy(update={"request_id": issue.request_id})
    with pytest.raises(RuleViolation) as refused:
        publisher.revoke(reuse)
    assert refused.value.code == "request_id_reused"
    assert len(backbone.published(issue.listing_id)) == 1
