"""The runner publishes every repair a pass plans, also when it looks at the pass again.

The engine opens a repair when it plans it, and from then on judges the listing "being
repaired"; a runner that redid a pass (a digest its rows could not explain, then a rescan)
and dropped the first pass's outcome left such repairs open and never sent: the listing was
never repaired, only escalated (seen under load in the hand-edits integration test).
"""

from __future__ import annotations

from datetime import timedelta

from services.core.digest import bucket_of
from services.core.topics import Topics
from services.reconciler.engine import Outcome
from services.reconciler.runner import Runner
from services.reconciler.settings import ReconcilerSettings
from tests.support.factory import T0
from tests.unit.reconciler.memory_log import MemoryLog
from tests.unit.reconciler.support import World, copy_digest

CA = "civil-aviation"


def test_a_repair_planned_from_a_digest_the_rows_cannot_explain_is_still_sent(world: World) -> None:
    for i in range(10):
        world.record(world.book.issue(f"L-{i}", measures=("flight_ban",)), T0)
    copy = world.copies[CA]
    del copy.rows["L-3"]  # a row deleted by hand: the digest's pass finds it ...
    buckets = copy.digest()
    lied = (bucket_of("L-3") + 1) % 256
    buckets[lied] = "ff" * 32  # ... in a digest with a bucket the rows do not add up to: looked at again
    world.engine.on_digest(copy_digest(CA, buckets, copy.positions()))
    log = MemoryLog()
    runner = Runner(Topics(""), ReconcilerSettings(), world.policy, {CA: copy}, lambda _: None, log, log)
    runner.engine = world.engine

    outcome = Outcome()
    runner._compare(CA, copy, T0 + timedelta(hours=1), deep=False, planned=outcome)

    assert [(r.envelope.listing_id, r.op) for r in outcome.repairs] == [("L-3", "upsert")]
    assert [f.envelope.listing_id for f in outcome.findings if f.kind == "stale_copy"] == ["L-3"]
    assert len(world.engine.repairs) == 1
