"""`accord audit state-at T` on a real broker: the ledger, the expected views and stale copies at T."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.core.events import Envelope, ListingIssued
from services.core.sealing import seal
from tests.integration.audit.world import World

T1 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def listed_then_revoked(world: World) -> None:
    """L-1 (flight and rail ban) is issued at T1 and revoked at T2; L-2 stays listed."""
    book = world.book
    book.now = T1
    world.publish(book.issue("L-1", agency="luoshan-police"))
    world.publish(book.issue("L-2", agency="court", measures=("rail_ban",)))
    world.ack("civil-aviation", "L-1", 1, T1 + timedelta(seconds=1))
    world.ack("railway", "L-1", 1, T1 + timedelta(seconds=1))
    world.ack("railway", "L-2", 1, T1 + timedelta(seconds=1))
    book.now = T2
    world.publish(book.revoke("L-1", agency="luoshan-police"))
    world.ack("railway", "L-1", 2, T2 + timedelta(seconds=1), op="delete")


def listings_in(view: list[dict[str, object]]) -> set[object]:
    return {row["listing"] for row in view}


def test_between_listing_and_revocation_the_listing_is_in_the_views(world: World) -> None:
    listed_then_revoked(world)
    between = (T1 + timedelta(days=3)).isoformat()
    assert listings_in(world.run_json("state-at", between, "--agency", "civil-aviation")["view"]) == {"L-1"}
    assert listings_in(world.run_json("state-at", between, "--agency", "railway")["view"]) == {"L-1", "L-2"}
    ledger = world.run_json("state-at", between, "--ledger")["ledger"]
    assert {(r["listing"], r["status"], r["version"]) for r in ledger} == {
        ("L-1", "active", 1),
        ("L-2", "active", 1),
    }


def test_after_the_revocation_the_listing_is_gone_from_every_view(world: World) -> None:
    listed_then_revoked(world)
    after = (T2 + timedelta(hours=1)).isoformat()
    assert listings_in(world.run_json("state-at", after, "--agency", "civil-aviation")["view"]) == set()
    assert listings_in(world.run_json("state-at", after, "--agency", "railway")["view"]) == {"L-2"}
    summary = {r["agency"]: r["rows"] for r in world.run_json("state-at", after)["views"]}
    assert summary["civil-aviation"] == 0 and summary["railway"] == 1
    before = world.run_json("state-at", "2026-01-01T00:00:00")
    assert {r["rows"] for r in before["views"]} == {0}
    text = world.run("state-at", after, "--ledger").stdout
    assert "L-1" in text and "revoked" in text


def test_compare_names_the_copy_that_had_not_applied_the_revocation(world: World) -> None:
    listed_then_revoked(world)
    between = (T1 + timedelta(days=3)).isoformat()
    assert world.run_json("state-at", between, "--compare")["stale"] == []
    after = T2 + timedelta(hours=1)
    stale = world.run_json("state-at", after.isoformat(), "--compare")["stale"]
    assert [(s["agency"], s["listing"], s["expected"], s["copy"]) for s in stale] == [
        ("civil-aviation", "L-1", "v2 delete", "v1")
    ]
    assert stale[0]["behind_s"] == 3600.0
    assert world.run_json("state-at", after.isoformat(), "--compare", "--sla", "7200")["stale"] == []
    only_rail = world.run_json("state-at", after.isoformat(), "--compare", "--agency", "railway")
    assert only_rail["stale"] == [] and listings_in(only_rail["view"]) == {"L-2"}
    csv = world.run("state-at", after.isoformat(), "--compare", "--csv").stdout.splitlines()
    assert csv[0] == "agency,listing,expected,copy,since,behind,behind_s"
    assert csv[1].startswith("civil-aviation,L-1,v2 delete,v1,2026-03-01T09:00:00+00:00,+1.0 h,3600.0")


def test_the_decision_clock_counts_a_listing_decided_before_it_was_recorded(world: World) -> None:
    decided, recorded = T1, T1 + timedelta(days=10)
    env = Envelope(
        event_id=str(uuid.uuid4()),
        listing_id="L-late",
        version=1,
        agency="court",
        occurred_at=decided,
        recorded_at=recorded,
    )
    world.book.now = decided
    draft = world.book.issue("L-draft")
    late = ListingIssued(**{**draft.model_dump(), "envelope": env.model_dump()})
    world.publish(seal(late, "", world.book.keystore.private("court")))
    at = (T1 + timedelta(days=1)).isoformat()
    assert listings_in(world.run_json("state-at", at, "--agency", "railway")["view"]) == set()
    view = world.run_json("state-at", at, "--agency", "railway", "--clock", "decided")["view"]
    assert listings_in(view) == {"L-late"}


def test_an_event_the_ledger_refused_is_not_part_of_the_past(world: World) -> None:
    listed_then_revoked(world)
    book = world.book
    book.now = T2 + timedelta(days=1)
    world.publish(book.issue("L-3", agency="court"))
    revoke = book.revoke("L-3", agency="court")
    forged = seal(revoke, revoke.envelope.prev_hash, book.keystore.private("tax-bureau"))
    where = world.publish(forged)
    world.reject(where, "L-3", "bad_signature", "forged", book.now)
    later = (T2 + timedelta(days=2)).isoformat()
    result = world.run_json("state-at", later, "--agency", "civil-aviation")
    assert listings_in(result["view"]) == {"L-3"}
    assert any("1 events skipped because the ledger refused them" in n for n in result["notes"])


def test_a_bad_time_or_agency_is_a_clear_error(world: World) -> None:
    bad_time = world.run("state-at", "yesterday")
    assert bad_time.exit_code == 2 and "ISO 8601" in bad_time.output
    bad_agency = world.run("state-at", "2026-01-01", "--agency", "luoshan-police")
    assert bad_agency.exit_code == 2 and "enforces no measure" in bad_agency.output
