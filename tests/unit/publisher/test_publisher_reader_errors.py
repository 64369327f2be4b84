"""Which broker answers the publisher's reader asks again, and which it reports at once."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from services.publisher.reader import transient


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.UNKNOWN_LEADER_EPOCH,  # seen in CI just after a topic was created
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    ],
)
def test_answers_of_a_settling_cluster_are_asked_again(code: int) -> None:
    assert transient(KafkaError(code))


@pytest.mark.parametrize("code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.INVALID_REQUEST])
def test_answers_that_will_not_change_are_reported_at_once(code: int) -> None:
    assert not transient(KafkaError(code))
