"""`accord audit timeline` on a real broker: the Luoshan case told from the log alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.core.crypto import pseudonymise
from services.core.sealing import seal
from tests.integration.audit.world import PSEUDONYM_KEY, World

LISTED = datetime(2016, 5, 3, 9, 0, tzinfo=UTC)
APPEALED = datetime(2017, 3, 1, 10, 0, tzinfo=UTC)
UPHELD = datetime(2020, 10, 12, 15, 0, tzinfo=UTC)
REVOKED = datetime(2020, 10, 12, 15, 30, tzinfo=UTC)
STOPPED = datetime(2021, 3, 9, 8, 0, tzinfo=UTC)
MR_YU = "41152119800101123X"


def luoshan(world: World) -> None:
    """Luoshan police list Mr. Yu; both transport copies apply it; he objects; the bureau revokes;
    railway applies the revocation, civil aviation never does, until the reconciler finds it."""
    book, ref = world.book, pseudonymise(MR_YU, PSEUDONYM_KEY.encode())
    book.now = LISTED
    world.publish(
        book.issue(
            "L-luoshan-1",
            agency="luoshan-police",
            subject_ref=ref,
            days=1800,
            category="public_security_risk",
        )
    )
    world.ack("civil-aviation", "L-luoshan-1", 1, LISTED + timedelta(seconds=0.4))
    world.ack("railway", "L-luoshan-1", 1, LISTED + timedelta(seconds=0.3))
    book.now = APPEALED
    world.publish(book.object("L-luoshan-1", agency="luoshan-police"))
    world.ack("civil-aviation", "L-luoshan-1", 2, APPEALED + timedelta(seconds=0.5))
    world.ack("railway", "L-luoshan-1", 2, APPEALED + timedelta(seconds=0.6))
    book.now = UPHELD
    world.publish(book.resolve("L-luoshan-1", agency="luoshan-police", outcome="upheld"))
    world.ack("civil-aviation", "L-luoshan-1", 3, UPHELD + timedelta(seconds=0.4))
    world.ack("railway", "L-luoshan-1", 3, UPHELD + timedelta(seconds=0.4))
    book.now = REVOKED
    world.publish(book.revoke("L-luoshan-1", agency="luoshan-police", reason="mislisting"))
    world.ack("railway", "L-luoshan-1", 4, REVOKED + timedelta(seconds=0.5), op="delete")
    world.finding(
        "civil-aviation",
        "L-luoshan-1",
        "stale_copy",
        4,
        3,
        STOPPED,
        "revocation not applied: the copy still bans the subject",
        since=REVOKED,
    )


def test_the_luoshan_timeline_reads_like_the_story(world: World) -> None:
    luoshan(world)
    result = world.run("timeline", "--listing", "L-luoshan-1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    story = [
        ("2016-05-03 09:00:00.000", "luoshan-police", "ISSUED v1", "flight_ban, rail_ban · basis: SPC"),
        ("2016-05-03 09:00:00.300", "railway", "applied v1", "upsert (+0.3 s)"),
        ("2016-05-03 09:00:00.400", "civil-aviation", "applied v1", "upsert (+0.4 s)"),
        ("2017-03-01 10:00:00.000", "luoshan-police", "OBJECTION v2", "objection obj-1"),
        ("2020-10-12 15:00:00.000", "luoshan-police", "RESOLVED v3", "obj-1 upheld, action revoke"),
        ("2020-10-12 15:30:00.000", "luoshan-police", "REVOKED v4", "mislisting"),
        ("2020-10-12 15:30:00.000", "civil-aviation", "NOT APPLIED v4", "no acknowledgement of the delete"),
        ("2020-10-12 15:30:00.500", "railway", "applied v4", "delete (+0.5 s)"),
        ("2021-03-09 08:00:00.000", "civil-aviation", "finding: stale_copy", "copy v3, expected v4"),
    ]
    at = 0
    for words in story:
        at = next(i for i in range(at, len(lines)) if all(w in lines[i] for w in words))
    copies = world.run_json("timeline", "--listing", "L-luoshan-1")["copies"]
    assert {(c["agency"], c["applied"], c["state"]) for c in copies} == {
        ("civil-aviation", "v3", "BEHIND"),
        ("railway", "v4", "in step"),
    }


def test_a_repair_shows_when_the_copy_finally_applied_the_revocation(world: World) -> None:
    luoshan(world)
    repaired = STOPPED + timedelta(minutes=2)
    world.finding("civil-aviation", "L-luoshan-1", "repaired", 4, 4, repaired, "re-delivered version 4")
    world.ack("civil-aviation", "L-luoshan-1", 4, repaired - timedelta(seconds=1), op="delete")
    timeline = world.run_json("timeline", "--listing", "L-luoshan-1")
    lines = [(e["agency"], e["event"], e["detail"]) for e in timeline["timeline"]]
    assert ("civil-aviation", "applied v4", "delete (+147.7 d)") in lines
    assert not [line for line in lines if line[1].startswith("NOT APPLIED")]
    assert lines[-1][:2] == ("civil-aviation", "finding: repaired")
    assert {c["state"] for c in timeline["copies"]} == {"in step"}
    issued = timeline["timeline"][0]
    assert issued["basis"].startswith("SPC Provisions")
    assert issued["decided"] == LISTED.isoformat()


def test_a_subject_timeline_gathers_every_listing_of_that_person_only(world: World, tmp_path: Path) -> None:
    luoshan(world)
    book = world.book
    book.now = UPHELD + timedelta(days=1)
    ref = pseudonymise(MR_YU, PSEUDONYM_KEY.encode())
    world.publish(book.issue("L-court-7", agency="court", subject_ref=ref, measures=("high_consumption",)))
    world.publish(book.issue("L-other", agency="court", subject_ref="s-someone-else"))
    by_id = world.run_json("timeline", "--subject-file", "-", stdin="411521-19800101-123x\n")
    by_ref = world.run_json("timeline", "--subject-ref", ref)
    assert by_id == by_ref
    assert {e["listing"] for e in by_id["timeline"]} == {"L-luoshan-1", "L-court-7"}
    court = [e for e in by_id["timeline"] if e["listing"] == "L-court-7"]
    assert (court[0]["agency"], court[0]["event"]) == ("court", "ISSUED v1")
    (tmp_path / "subject.txt").write_text(f"{MR_YU}\n")
    text = world.run("timeline", "--subject-file", str(tmp_path / "subject.txt")).stdout
    assert "L-court-7" in text and "L-other" not in text
    flagged = world.run("timeline", "--subject", MR_YU)
    assert flagged.exit_code == 2 and "never taken from the command line" in flagged.output


def test_a_court_revocation_on_another_topic_joins_the_listing_story(world: World) -> None:
    book = world.book
    book.now = LISTED
    world.publish(book.issue("L-x", agency="tax-bureau", measures=("flight_ban",)))
    book.now = REVOKED
    world.publish(book.revoke("L-x", agency="court", reason="court_order"))
    events = [e["event"] for e in world.run_json("timeline", "--listing", "L-x")["timeline"]]
    assert events[0] == "ISSUED v1" and "REVOKED v2" in events
    assert world.run("timeline", "--listing", "L-x", "--subject-ref", "s").exit_code == 2


def test_a_revocation_the_ledger_refused_is_told_as_refused_not_as_done(world: World) -> None:
    book = world.book
    book.now = LISTED
    world.publish(book.issue("L-y", agency="luoshan-police", measures=("flight_ban",)))
    world.ack("civil-aviation", "L-y", 1, LISTED + timedelta(seconds=1))
    book.now = REVOKED
    revoke = book.revoke("L-y", agency="luoshan-police")
    forged = seal(revoke, revoke.envelope.prev_hash, book.keystore.private("railway"))
    where = world.publish(forged)
    world.reject(where, "L-y", "bad_signature", "the signature is not luoshan-police's", REVOKED)
    timeline = world.run_json("timeline", "--listing", "L-y")
    events = [(e["agency"], e["event"], e["position"]) for e in timeline["timeline"]]
    assert (
        "luoshan-police",
        "REFUSED REVOKED v2",
        f"{where.topic}[{where.partition}]@{where.offset}",
    ) in events
    assert not any(event == "REVOKED v2" for _, event, _ in events)
    assert timeline["copies"] == [
        {
            "agency": "civil-aviation",
            "listing": "L-y",
            "expected": "v1 upsert",
            "applied": "v1",
            "state": "in step",
            "since": None,
        }
    ]
    assert any(note.startswith("L-y: active at v1") for note in timeline["notes"])
