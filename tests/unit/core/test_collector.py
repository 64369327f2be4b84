"""A settled worker: what it holds once set up out of the collector's sight, the young collected later."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.core import collector


@pytest.fixture
def restored() -> Iterator[None]:
    """The collector as the test runner had it, after the test."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored")
def test_settling_freezes_what_the_worker_holds_and_raises_only_the_young_threshold() -> None:
    held = {"set up": ["once"]}  # something the worker keeps, tracked by the collector
    _, older, oldest = gc.get_threshold()
    collector.settle()
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, older, oldest)
    assert gc.get_freeze_count() > 0
    assert all(o is not held for o in gc.get_objects())  # frozen: in no generation the collector walks
    young = {"made": ["after"]}
    assert any(o is young for o in gc.get_objects(generation=0))  # what comes after is collected as ever
