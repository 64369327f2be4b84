"""The engine end to end without a broker: what it reports, what it leaves alone, how it repairs."""

from __future__ import annotations

from datetime import timedelta

from services.core.events import ListingState
from services.core.listing import evolve
from services.core.topics import RECONCILER
from services.core.views import view_change
from services.reconciler.engine import Outcome, PassReport
from tests.support.factory import T0
from tests.unit.reconciler.support import World, applied

S = timedelta(seconds=1)
CA = "civil-aviation"


def reconcile(world: World, agency: str, at: timedelta) -> tuple[Outcome, PassReport]:
    copy = world.copies[agency]
    return world.engine.reconcile(agency, copy.digest(), copy, T0 + at)


def test_healthy_copies_raise_nothing(world: World) -> None:
    for i in range(20):
        world.record(world.book.issue(f"L-{i}"), T0)
    world.record(world.book.revoke("L-3"), T0 + S)
    world.record(world.book.correct("L-4", severity="severe"), T0 + S)
    for agency, copy in world.copies.items():
        assert world.engine.healthy(agency, copy.digest())
        outcome, report = reconcile(world, agency, 3600 * S)
        assert outcome.findings == [] and outcome.repairs == [] and report.bytes_exchanged < 20_000
    assert world.engine.check(T0 + 3600 * S).findings == []


def test_a_copy_merely_behind_within_its_sla_is_not_reported_and_is_once_past_it(world: World) -> None:
    world.record(world.book.issue("L-1"), T0, deliver=False)
    outcome, report = reconcile(world, CA, 30 * S)
    assert report.suspects == 1 and outcome.findings == [] and outcome.repairs == []
    outcome, _ = reconcile(world, CA, 61 * S)
    [finding] = outcome.findings
    assert (finding.kind, finding.copy_agency, finding.expected_version, finding.copy_version) == (
        "stale_copy", CA, 1, None,
    )  # fmt: skip
    assert finding.detail.startswith("missing") and finding.since == T0
    [repair] = outcome.repairs
    assert (repair.op, repair.view_agency, repair.envelope.agency) == ("upsert", CA, RECONCILER)
    assert repair.envelope.version == 1 and repair.measures == ["flight_ban"]


def test_a_late_acknowledgement_closes_the_missing_ack_finding_it_answers(world: World) -> None:
    [change] = world.record(world.book.issue("L-1", measures=("flight_ban",)), T0, ack=False)
    [missing] = world.engine.check(T0 + 61 * S).findings
    assert (missing.kind, missing.copy_agency) == ("missing_ack", change.view_agency)
    [closed] = world.engine.on_applied(applied(change, 0, T0 + 75 * S)).findings
    assert (closed.kind, closed.copy_agency, closed.expected_version, closed.since) == (
        "acknowledged_late", change.view_agency, 1, T0,
    )  # fmt: skip
    assert missing.finding_id in closed.detail and "75.0 s" in closed.detail
    [correction] = world.record(world.book.correct("L-1", severity="severe"), T0 + 80 * S, ack=False)
    assert world.engine.on_applied(applied(correction, 1, T0 + 81 * S)).findings == []  # on time
    assert world.engine.check(T0 + 3600 * S).findings == []


def test_a_change_acknowledged_but_not_written_is_caught_inside_the_sla(world: World) -> None:
    [change, _] = world.record(world.book.issue("L-1"), T0, deliver=False)
    world.engine.on_applied(applied(change, 0, T0 + S))  # the sink said so, but wrote nothing
    outcome, _ = reconcile(world, CA, 5 * S)
    assert [f.kind for f in outcome.findings] == ["stale_copy"]


def test_luoshan_a_revoked_listing_restored_from_backup_is_found_repaired_and_timed(world: World) -> None:
    world.record(world.book.issue("L-1", agency="luoshan-police", category="public_security_risk"), T0)
    backup = dict(world.copies[CA].rows)
    world.record(world.book.revoke("L-1", agency="luoshan-police"), T0 + 10 * S)
    world.copies[CA].rows = backup  # restored from the old backup: the revocation is lost
    assert world.engine.healthy("railway", world.copies["railway"].digest())
    outcome, _ = reconcile(world, CA, 100 * S)
    [finding] = outcome.findings
    assert (finding.kind, finding.expected_version, finding.copy_version) == ("revoked_still_active", 2, 1)
    [repair] = outcome.repairs
    assert (repair.op, repair.status, repair.envelope.version) == ("delete", "revoked", 2)
    assert reconcile(world, CA, 101 * S)[0].findings == []  # a repair on its way is not re-reported
    [repaired] = world.emit(repair, T0 + 101 * S)
    assert (repaired.kind, repaired.since, repaired.envelope.listing_id) == ("repaired", T0 + 10 * S, "L-1")
    assert world.engine.healthy(CA, world.copies[CA].digest())
    summary = world.engine.times.summary()
    assert summary[(CA, "repair")].max == 92.0  # wrong from the revocation (10 s) until the ack (102 s)
    assert summary[("railway", "change")].count == 2


def test_an_expired_listing_still_active_in_a_copy_is_named_as_expired(world: World) -> None:
    world.record(world.book.issue("L-1"), T0)
    backup = dict(world.copies[CA].rows)
    world.record(world.book.expire("L-1"), T0 + 10 * S)
    world.copies[CA].rows = backup
    [finding] = reconcile(world, CA, 100 * S)[0].findings
    assert (finding.kind, finding.expected_version, finding.copy_version) == ("expired_still_active", 2, 1)


def test_a_repair_not_acknowledged_in_time_is_escalated_once(world: World) -> None:
    world.record(world.book.issue("L-1"), T0)
    del world.copies[CA].rows["L-1"]
    outcome, _ = reconcile(world, CA, 100 * S)
    world.emit(outcome.repairs[0], T0 + 100 * S, deliver=False)
    assert world.engine.check(T0 + 120 * S).findings == []
    [escalation] = world.engine.check(T0 + 131 * S).findings
    assert escalation.kind == "escalated" and escalation.since == outcome.findings[0].since
    assert world.engine.check(T0 + 200 * S).findings == []


def test_a_difference_that_returns_after_its_repair_is_escalated(world: World) -> None:
    world.record(world.book.issue("L-1"), T0)
    row = world.copies[CA].rows.pop("L-1")
    outcome, _ = reconcile(world, CA, 100 * S)
    world.emit(outcome.repairs[0], T0 + 100 * S)
    del world.copies[CA].rows["L-1"]  # the copy loses it again, the same way
    again, _ = reconcile(world, CA, 200 * S)
    assert [f.kind for f in again.findings] == ["escalated", "stale_copy"] and len(again.repairs) == 1
    assert row.listing_id == "L-1"


def test_a_copy_ahead_of_what_the_reconciler_read_is_judged_later(world: World) -> None:
    """The copy applied changes the reconciler has not read yet: its 'differences' may be our lag."""
    world.record(world.book.issue("L-1"), T0)
    del world.copies[CA].rows["L-1"]
    world.copies[CA].next_offset = 99
    outcome, report = reconcile(world, CA, 100 * S)
    assert report.deferred and outcome.findings == []


def test_a_ledger_topic_lagging_the_view_topic_is_not_the_copy_s_fault(world: World) -> None:
    world.record(world.book.issue("L-1"), T0)
    before = world.states["L-1"]
    after: ListingState = evolve(before, world.book.revoke("L-1"))  # type: ignore[arg-type]
    world.states["L-1"] = after
    change = view_change(before, after, CA, world.policy, T0 + S)
    assert change is not None
    world.emit(change, T0 + S)  # the copy applied the revocation; the ledger state is not read yet
    outcome, report = reconcile(world, CA, 100 * S)
    assert report.suspects == 1 and outcome.findings == []


def test_an_objection_past_due_without_an_outcome_is_reported_once(world: World) -> None:
    world.record(world.book.issue("L-1"), T0)
    world.record(world.book.object("L-1", "obj-1"), T0)
    world.record(world.book.issue("L-2"), T0)
    world.record(world.book.object("L-2", "obj-2"), T0)
    world.record(world.book.resolve("L-2", "obj-2"), T0 + S)
    assert world.engine.check(T0 + timedelta(days=14)).findings == []
    [finding] = world.engine.check(T0 + timedelta(days=16)).findings
    assert (finding.kind, finding.envelope.listing_id, finding.copy_agency) == (
        "overdue_objection",
        "L-1",
        "court",
    )
    assert world.engine.check(T0 + timedelta(days=17)).findings == []
