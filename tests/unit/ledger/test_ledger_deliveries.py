"""What a batch waits for (`outbox.Deliveries`): every record it queued confirmed, or the first failure.

The delivery reports are handed here as the outbox's poller hands them to the loop (`arrived`); the
broker's side is `tests/integration/ledger/test_ledger_faults.py` (a refused write stops the worker,
the table changelogs hold what the stores hold).
"""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import KafkaError

from services.core.errors import BrokerUnavailable
from services.ledger.outbox import Deliveries


def test_it_answers_once_every_queued_record_is_confirmed_with_the_last_offset_of_each_partition() -> None:
    async def scenario() -> tuple[bool, dict[tuple[str, int], int]]:
        deliveries = Deliveries()
        deliveries.queued = 3
        waiting = asyncio.ensure_future(deliveries.confirmed())
        deliveries.arrived(None, "t-changelog", 1, 41)
        deliveries.arrived(None, "t-changelog", 1, 40)  # reports of one partition may come in any order
        await asyncio.sleep(0)
        early = waiting.done()
        deliveries.arrived(None, "t-changelog", 2, 7)
        return early, await waiting

    early, offsets = asyncio.run(scenario())
    assert not early  # two of three confirmed: still waiting
    assert offsets == {("t-changelog", 1): 41, ("t-changelog", 2): 7}


def test_nothing_queued_is_confirmed_at_once() -> None:
    async def scenario() -> dict[tuple[str, int], int]:
        return await asyncio.wait_for(Deliveries().confirmed(), 1)

    assert asyncio.run(scenario()) == {}


def test_the_first_failure_raises_without_waiting_for_the_rest() -> None:
    async def scenario() -> None:
        deliveries = Deliveries()
        deliveries.queued = 3
        waiting = asyncio.ensure_future(deliveries.confirmed())
        deliveries.arrived(None, "t.ledger", 0, 5)
        deliveries.arrived(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), "t.ledger", 0, None)
        await asyncio.wait_for(waiting, 1)

    with pytest.raises(BrokerUnavailable, match=r"delivery to t\.ledger failed"):
        asyncio.run(scenario())


def test_records_queued_after_a_wait_began_are_waited_for_too() -> None:
    async def scenario() -> bool:
        deliveries = Deliveries()
        deliveries.queued = 1
        waiting = asyncio.ensure_future(deliveries.confirmed())
        await asyncio.sleep(0)
        deliveries.queued += 1
        deliveries.arrived(None, "t.views.railway", 0, 1)
        await asyncio.sleep(0)
        early = waiting.done()
        deliveries.arrived(None, "t.views.railway", 0, 2)
        await asyncio.wait_for(waiting, 1)
        return early

    assert not asyncio.run(scenario())
