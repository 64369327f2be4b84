"""The engine end to end without a broker: what it reports, what it leaves alone, how it repairs."""

from __future__ import annotations

from datetime import timedelta

from services.core.copystore.probe import Damage
from services.core.digest import bucket_of
from services.core.events import ListingState
from services.core.listing import evolve
from services.core.topics import RECONCILER
from services.core.views import view_change
from services.reconciler.engine import Outcome, PassReport
from tests.support.factory import T0
from tests.unit.reconciler.support import World, applied, copy_digest

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
    copy = world.copies[CA]
    shown = T0 + 95 * S  # the copy's digest that first showed it, judged at 100 s
    outcome, _ = world.engine.reconcile(CA, copy.digest(), copy, T0 + 100 * S, shown_at=shown)
    [finding] = outcome.findings
    assert (finding.kind, finding.expected_version, finding.copy_version) == ("revoked_still_active", 2, 1)
    assert finding.since == shown and "first digest that showed it" in finding.detail
    [repair] = outcome.repairs
    assert (repair.op, repair.status, repair.envelope.version) == ("delete", "revoked", 2)
    assert reconcile(world, CA, 101 * S)[0].findings == []  # a repair on its way is not re-reported
    [repaired] = world.emit(repair, T0 + 101 * S)
    assert (repaired.kind, repaired.since, repaired.envelope.listing_id) == ("repaired", shown, "L-1")
    assert world.engine.healthy(CA, world.copies[CA].digest())
    summary = world.engine.times.summary()
    # The copy acknowledged the revocation, then a restore took it back: wrong since the digest at 95 s,
    # not since the revocation (10 s), until the repair's acknowledgement (102 s).
    assert summary[(CA, "changed")].max == 7.0
    assert summary[("railway", "change")].count == 2


def test_a_missed_change_is_wrong_since_it_was_due(world: World) -> None:
    world.record(world.book.issue("L-1", agency="luoshan-police", category="public_security_risk"), T0)
    world.record(world.book.revoke("L-1", agency="luoshan-police"), T0 + 10 * S, deliver=False)
    copy = world.copies[CA]
    outcome, _ = world.engine.reconcile(CA, copy.digest(), copy, T0 + 100 * S, shown_at=T0 + 95 * S)
    [finding] = outcome.findings
    assert finding.since == T0 + 10 * S and "was due" in finding.detail
    [repaired] = world.emit(outcome.repairs[0], T0 + 101 * S)
    assert repaired.since == T0 + 10 * S and "was due" in repaired.detail
    assert world.engine.times.summary()[(CA, "missed")].max == 92.0  # due at 10 s, acknowledged at 102 s


def test_a_row_nobody_published_is_wrong_since_the_digest_that_showed_it(world: World) -> None:
    world.record(world.book.issue("L-1"), T0)
    copy = world.copies[CA]
    copy.rows["X-1"] = copy.rows["L-1"].model_copy(update={"listing_id": "X-1"})
    outcome, _ = world.engine.reconcile(CA, copy.digest(), copy, T0 + 100 * S, shown_at=T0 + 97 * S)
    [finding] = outcome.findings
    assert (finding.kind, finding.since, finding.detail.split(":")[0]) == ("stale_copy", T0 + 97 * S, "extra")
    [repair] = outcome.repairs
    assert (repair.op, repair.envelope.version) == ("delete", 0)
    world.emit(repair, T0 + 100 * S)
    assert world.engine.times.summary()[(CA, "changed")].max == 4.0  # 97 s -> acknowledged at 101 s


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


def test_a_rescan_finding_the_copy_right_before_its_repair_is_acknowledged_leaves_it_to_the_ack(
    world: World,
) -> None:
    """The sink applied the repair between its sending and a deep rescan in the same pass (seen in
    the two-reconcilers integration test): the detection is closed once, by the acknowledgement."""
    world.record(world.book.issue("L-1"), T0)
    del world.copies[CA].rows["L-1"]
    outcome, _ = reconcile(world, CA, 100 * S)
    [repair] = outcome.repairs
    ack = world.copies[CA].apply(repair)  # applied, its ack not read yet
    assert world.engine.resolve(CA, T0 + 101 * S, "a rescan equals its view").findings == []
    world.emit(repair, T0 + 100 * S, deliver=False)
    [closed] = world.engine.on_applied(ack).findings
    assert closed.kind == "repaired"
    assert world.engine.resolve(CA, T0 + 102 * S, "a rescan equals its view").findings == []


def test_a_copy_right_again_closes_a_detection_whose_repair_was_escalated(world: World) -> None:
    world.record(world.book.issue("L-1"), T0)
    del world.copies[CA].rows["L-1"]
    outcome, _ = reconcile(world, CA, 100 * S)
    world.emit(outcome.repairs[0], T0 + 100 * S, deliver=False)  # never applied
    [escalation] = world.engine.check(T0 + 131 * S).findings
    [closed] = world.engine.resolve(CA, T0 + 140 * S, "a rescan equals its view").findings
    assert (escalation.kind, closed.kind) == ("escalated", "resolved") and len(world.engine.repairs) == 0


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
    after: ListingState = evolve(before, world.book.revoke("L-1"))
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


def test_a_deadline_is_judged_only_as_far_as_the_acknowledgements_are_read(world: World) -> None:
    world.record(world.book.issue("L-1", measures=("flight_ban",)), T0, ack=False)
    # an hour on, but the acknowledgements are read only up to 30 s: the ack may be in the backlog
    assert world.engine.check(T0 + 3600 * S, acks_read_to=T0 + 30 * S).findings == []
    [missing] = world.engine.check(T0 + 3600 * S, acks_read_to=T0 + 61 * S).findings
    assert missing.kind == "missing_ack"


def test_after_a_restart_nothing_is_published_twice_and_what_is_right_again_is_resolved(world: World) -> None:
    [change] = world.record(world.book.issue("L-1", measures=("flight_ban",)), T0, ack=False)
    world.record(world.book.issue("L-2"), T0)
    del world.copies[CA].rows["L-2"]
    [missing] = world.engine.check(T0 + 61 * S).findings
    stale, _ = reconcile(world, CA, 100 * S)
    published = [missing, *stale.findings]

    again = World.make_like(world)  # a new process: it reads the log, findings included
    for finding in published:
        again.engine.on_finding(finding)
    redo, _ = again.engine.reconcile(CA, world.copies[CA].digest(), world.copies[CA], T0 + 200 * S)
    assert redo.findings == [] and redo.repairs == []  # its repair is awaited, not sent again
    assert again.engine.on_applied(applied(change, 0, T0 + 150 * S)).findings == []  # read in the replay
    escalated, acked = again.engine.check(T0 + 211 * S).findings  # not a missing ack again: resolved
    assert (acked.kind, acked.envelope.listing_id) == ("resolved", "L-1")
    assert (escalated.kind, escalated.envelope.listing_id) == ("escalated", "L-2")  # never applied
    assert "acknowledged v1" in acked.detail and missing.finding_id in acked.detail
    [fixed] = again.engine.resolve(CA, T0 + 212 * S, "a rescan of the copy's rows equals its view").findings
    assert (fixed.kind, fixed.envelope.listing_id, fixed.detected_at) == ("resolved", "L-2", T0 + 212 * S)
    assert stale.findings[0].finding_id in fixed.detail
    assert again.engine.resolve(CA, T0 + 300 * S, "again").findings == []
    assert len(again.engine.book) == 0


def test_rolling_verification_finds_an_edit_the_running_digest_hides(world: World) -> None:
    for i in range(30):
        world.record(world.book.issue(f"L-{i}"), T0)
    copy = world.copies[CA]
    running = copy.digest()
    copy.rows["L-7"] = copy.rows["L-7"].model_copy(update={"measures": []})  # by hand
    assert world.engine.healthy(CA, running)  # what the sink's running digest still says
    target = bucket_of("L-7")
    others = [b for b in range(256) if b != target][:8]
    out, report, _ = world.engine.verify(CA, others, copy, T0 + 100 * S)
    assert out.findings == [] and report.differences == []
    out, report, read = world.engine.verify(CA, [target, *others[:3]], copy, T0 + 100 * S)
    assert [d.listing_id for d in report.differences] == ["L-7"] and len(out.repairs) == 1
    assert read[target] != running[target]


def test_a_running_digest_that_disagrees_with_the_rows_is_a_finding(world: World) -> None:
    world.record(world.book.issue("L-1"), T0)
    copy = world.copies[CA]
    digest = copy_digest(CA, copy.digest(), copy.positions())
    world.engine.on_digest(digest)
    assert world.engine.drift(CA, dict(enumerate(copy.digest())), T0 + S).findings == []
    rows = dict(enumerate(copy.digest()))
    rows[5] = "ab" * 32
    [drift] = world.engine.drift(CA, rows, T0 + S).findings
    assert drift.kind == "digest_drift" and "[5]" in drift.detail
    assert world.engine.drift(CA, rows, T0 + 2 * S).findings == []  # reported once

    partly = {b: h for b, h in enumerate(copy.digest()) if b < 5}
    assert world.engine.drift(CA, partly, T0 + 3 * S).findings == []  # bucket 5 not read again: open
    [closed] = world.engine.drift(CA, dict(enumerate(copy.digest())), T0 + 4 * S).findings
    assert closed.kind == "resolved" and drift.finding_id in closed.detail and "[5]" in closed.detail
    assert world.engine.book.open_for(CA) == []


def test_a_row_a_check_could_not_read_is_a_finding(world: World) -> None:
    world.record(world.book.issue("L-1"), T0)
    copy = world.copies[CA]
    copy.damage["L-1"] = Damage("row 'L-1' of the copy is not a valid view row", T0 + 5 * S)
    [damaged] = world.engine.damaged(CA, copy, T0 + 9 * S).findings
    assert (damaged.kind, damaged.envelope.listing_id, damaged.since) == ("copy_damaged", "L-1", T0 + 5 * S)
    assert world.engine.damaged(CA, copy, T0 + 19 * S).findings == []


def test_a_repair_acknowledged_before_it_is_read_back_is_settled_when_it_is(world: World) -> None:
    """The acks and the view topic are read side by side: the copy's ack of a repair may come first."""
    world.record(world.book.issue("L-1"), T0)
    copy = world.copies[CA]
    del copy.rows["L-1"]
    outcome, _ = reconcile(world, CA, 3600 * S)
    [repair] = outcome.repairs
    offset = world.offsets[CA]
    copy.next_offset = offset
    ack = copy.apply(repair)
    assert [f.kind for f in world.engine.on_applied(ack).findings] == []  # not recognisable yet
    assert len(world.engine.repairs) == 1

    [repaired] = world.engine.on_view(repair, 0, offset, T0 + 3600 * S).findings

    assert repaired.kind == "repaired" and repaired.envelope.listing_id == "L-1"
    assert len(world.engine.repairs) == 0
