"""Replays shared over processes: results come back in share order, and a failure is never silent."""

from __future__ import annotations

import os

import pytest

from services.audit.parallel import ReplayFailed, Share, fan_out
from services.audit.replay import Meter
from services.core.errors import ConfigurationError


def summed(part: Share | None, meter: Meter | None) -> tuple[int, int]:
    assert part is not None and meter is not None
    meter(len(part))
    return sum(part), os.getpid()


def refusing(part: Share | None, meter: Meter | None) -> int:
    raise ConfigurationError(f"share {part} refused")


def dying(part: Share | None, meter: Meter | None) -> int:
    os._exit(3)


def test_each_share_runs_in_a_process_of_its_own_and_results_keep_share_order() -> None:
    metered: list[int] = []
    results = fan_out(summed, [(0, 2), (1,)], metered.append)
    assert [total for total, _ in results] == [2, 1]
    assert sorted(metered) == [1, 2]
    assert len({pid for _, pid in results} | {os.getpid()}) == 3


def test_one_share_runs_here_over_every_partition() -> None:
    assert fan_out(lambda part, meter: (part, os.getpid()), []) == [(None, os.getpid())]


def test_a_share_that_fails_fails_the_replay_with_its_own_error() -> None:
    with pytest.raises(ConfigurationError, match=r"share \([01],\) refused"):
        fan_out(refusing, [(0,), (1,)])


def test_a_process_that_dies_without_a_report_fails_the_replay() -> None:
    with pytest.raises(ReplayFailed, match="exited with 3 before reporting"):
        fan_out(dying, [(0,), (1,)])
