"""The publisher's book of the ledger's decisions: newest state wins, refusals count only from
their author's own topic, and an agency cannot forge another's refusal."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.core.commands import AnyCommand
from services.core.crypto import Keystore
from services.core.events import Envelope, ListingEvent, ListingState, Rejected
from services.core.listing import evolve
from services.core.sealing import seal
from services.core.serde import encode
from services.publisher.state import LedgerBook
from tests.support.factory import policy_with_keys
from tests.unit.publisher import samples
from tests.unit.publisher.desk import Desk
from tests.unit.publisher.samples import NOW

AUTHORS = {f"listings.{a}": a for a in ("court", "luoshan-police", "tax-bureau")}


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return policy_with_keys(tmp_path)[1]


def chain(keystore: Keystore, commands: list[AnyCommand]) -> tuple[list[ListingEvent], list[ListingState]]:
    """Events as the publisher seals them, and the ledger's state after each."""
    desk, events, states = Desk(), list[ListingEvent](), list[ListingState]()
    for command in commands:
        event = desk.submit(command)
        sealed = seal(
            event, events[-1].envelope.hash if events else "", keystore.private(event.envelope.agency)
        )
        events.append(sealed)
        states.append(evolve(states[-1] if states else None, sealed))
    return events, states


def rejection(event: ListingEvent, topic: str, code: str = "version_conflict") -> Rejected:
    refused = event.envelope
    env = Envelope(event_id=str(uuid.uuid4()), listing_id=refused.listing_id, version=refused.version,
                   agency="ledger", occurred_at=NOW, recorded_at=NOW)  # fmt: skip
    return Rejected(envelope=env, source_topic=topic, partition=0, offset=7, reason_code=code,
                    reason="version 2 is taken", payload=encode(event))  # fmt: skip


def test_an_admitted_event_is_found_in_its_listing_with_its_version(keystore: Keystore) -> None:
    issue = samples.issue()
    events, states = chain(keystore, [issue, samples.correct(issue.listing_id, 1)])
    book = LedgerBook(AUTHORS)
    book.take_state(states[0])
    assert book.admitted(issue.listing_id, events[0].envelope.event_id)
    assert not book.admitted(issue.listing_id, events[1].envelope.event_id)
    book.take_state(states[1])
    assert book.version_of(issue.listing_id, events[1].envelope.event_id) == 2
    assert book.listing_of(events[1].envelope.event_id) == issue.listing_id


def test_an_older_state_read_later_never_takes_the_listing_back(keystore: Keystore) -> None:
    issue = samples.issue()
    _, states = chain(keystore, [issue, samples.correct(issue.listing_id, 1)])
    book = LedgerBook(AUTHORS)
    book.take_state(states[1])
    book.take_state(states[0])  # a replay, or a re-stated older record
    state = book.state(issue.listing_id)
    assert state is not None and state.envelope.version == 2


def test_a_refusal_is_kept_for_the_agency_and_listing_of_the_refused_event(keystore: Keystore) -> None:
    issue = samples.issue()
    events, _ = chain(keystore, [issue, samples.correct(issue.listing_id, 1)])
    book = LedgerBook(AUTHORS)
    book.take_rejected(rejection(events[1], "listings.court"))
    refusal = book.refusal("court", issue.listing_id, events[1].envelope.event_id)
    assert refusal is not None and refusal.code == "version_conflict" and "taken" in refusal.reason
    assert book.refusal("court", "another-listing", events[1].envelope.event_id) is None


def test_a_refusal_of_an_event_off_its_authors_topic_answers_for_nobody(keystore: Keystore) -> None:
    """A tax bureau replaying the court's event on its own topic gets it refused (wrong_topic):
    that must not tell the court its event was refused."""
    issue = samples.issue()
    events, _ = chain(keystore, [issue])
    book = LedgerBook(AUTHORS)
    book.take_rejected(rejection(events[0], "listings.tax-bureau", "wrong_topic"))
    book.take_rejected(rejection(events[0], "views.civil-aviation", "bad_view"))  # a copy's refusal
    assert book.refusal("court", issue.listing_id, events[0].envelope.event_id) is None
    assert book.refusals() == {} and book.ignored == 2


def test_an_agency_reusing_another_agencys_event_id_forges_no_refusal(keystore: Keystore) -> None:
    court = samples.issue()
    (genuine,), _ = chain(keystore, [court])
    forged_command = samples.issue(agency="tax-bureau", category="tax_violation", details={},
                                   measures=["flight_ban"], severity="severe")  # fmt: skip
    (forged,), _ = chain(keystore, [forged_command])
    copied_id = forged.model_copy(update={"envelope": forged.envelope.model_copy(
        update={"event_id": genuine.envelope.event_id, "listing_id": court.listing_id})})  # fmt: skip
    book = LedgerBook(AUTHORS)
    book.take_rejected(rejection(copied_id, "listings.tax-bureau", "listing_exists"))
    assert book.refusal("court", court.listing_id, genuine.envelope.event_id) is None


def test_undecodable_refused_bytes_are_counted_and_passed_over(keystore: Keystore) -> None:
    (event,), _ = chain(keystore, [samples.issue()])
    garbage = rejection(event, "listings.court").model_copy(update={"payload": b"\x00garbage"})
    book = LedgerBook(AUTHORS)
    book.take_rejected(garbage)
    assert book.refusals() == {} and book.ignored == 1


def test_the_book_on_disk_holds_what_was_committed_with_its_positions(
    keystore: Keystore, tmp_path: Path
) -> None:
    """A restart opens the file and reads only the log's tail from the positions stored with it."""
    issue = samples.issue()
    events, states = chain(keystore, [issue, samples.correct(issue.listing_id, 1)])
    book = LedgerBook(AUTHORS, tmp_path / "book.sqlite3")
    book.take_state(states[1])
    book.take_rejected(rejection(events[1], "listings.court"))
    book.snapshot.commit({("ledger", 0): 12, ("rejected", 0): 3})
    book.close()
    again = LedgerBook(AUTHORS, tmp_path / "book.sqlite3")
    assert again.snapshot.positions() == {("ledger", 0): 12, ("rejected", 0): 3}
    assert again.version_of(issue.listing_id, events[0].envelope.event_id) == 1
    assert again.admitted(issue.listing_id, events[1].envelope.event_id)
    assert again.refusal("court", issue.listing_id, events[1].envelope.event_id) is not None
    assert len(again) == 1


def test_a_batch_cut_short_by_a_crash_is_read_again_and_counts_once(
    keystore: Keystore, tmp_path: Path
) -> None:
    """Nothing lost, nothing applied twice: an uncommitted batch leaves the book and its positions as
    they were; the same records taken again give the same book as taking them once."""
    issue = samples.issue()
    events, states = chain(keystore, [issue, samples.correct(issue.listing_id, 1)])
    path = tmp_path / "book.sqlite3"
    book = LedgerBook(AUTHORS, path)
    book.take_state(states[0])
    book.snapshot.commit({("ledger", 0): 1})
    book.take_state(states[1])  # the next batch: the process dies before commit()
    book.close()
    again = LedgerBook(AUTHORS, path)
    assert again.snapshot.positions() == {("ledger", 0): 1}
    assert not again.admitted(issue.listing_id, events[1].envelope.event_id)
    for state in (states[0], states[1], states[1]):  # read again from offset 1, and once more
        again.take_state(state)
    again.snapshot.commit({("ledger", 0): 2})
    assert again.version_of(issue.listing_id, events[1].envelope.event_id) == 2
    assert len(again) == 1


def test_two_processes_never_write_the_same_book(tmp_path: Path) -> None:
    """An HTTP server and import workers of one agency each claim a book of their own."""
    first = LedgerBook.claim(AUTHORS, tmp_path, "ns.-court")
    second = LedgerBook.claim(AUTHORS, tmp_path, "ns.-court")
    assert first.path != second.path and first.path.endswith("ns_-court.0.sqlite3")
    first.close()
    third = LedgerBook.claim(AUTHORS, tmp_path, "ns.-court")
    assert third.path == first.path  # released with its process (or its close)
    second.close()
    third.close()


def test_a_state_is_kept_as_the_bytes_it_was_read_as_and_reads_back_as_that_state(keystore: Keystore) -> None:
    issue = samples.issue()
    _, states = chain(keystore, [issue])
    read = encode(states[0])  # what the reader got from `ledger`
    book = LedgerBook(AUTHORS)
    book.take_state(states[0], read)
    kept = book.snapshot.db.execute("SELECT raw FROM states WHERE listing_id = ?", (issue.listing_id,))
    assert kept.fetchone()[0] == read  # not encoded a second time
    assert book.state(issue.listing_id) == states[0]
