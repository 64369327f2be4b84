"""The publisher's view folds the log as the ledger would: seals, order, authority, content."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.core.crypto import Keystore, seal
from services.core.events import ListingEvent
from services.core.policy import Policy
from services.core.serde import decode_full, encode
from services.publisher.state import ListingBook, Position, receipt_of
from tests.support.factory import policy_with_keys
from tests.unit.publisher import samples
from tests.unit.publisher.desk import Desk


@pytest.fixture
def keyed(tmp_path: Path) -> tuple[Policy, Keystore]:
    return policy_with_keys(tmp_path)


def sealed_chain(desk: Desk, keystore: Keystore, commands: list[object]) -> list[ListingEvent]:
    """Events as the publisher seals them, each linked to the one before."""
    chain: list[ListingEvent] = []
    for command in commands:
        event = desk.submit(command)  # type: ignore[arg-type]
        prev = chain[-1].envelope.hash if chain else ""
        chain.append(seal(event, prev, keystore.private(event.envelope.agency)))
    return chain


AUTHORS = {f"listings.{a}": a for a in ("court", "luoshan-police", "tax-bureau")}


def read(book: ListingBook, event: ListingEvent, topic: str, offset: int, key: str | None = None) -> None:
    """As the reader hands a message over: decoded, where it was, and its key."""
    where = Position(topic, 0, offset)
    book.record_decoded(
        decode_full(encode(event), topic, 0, offset), where, (key or event.envelope.listing_id).encode()
    )


def test_a_correction_read_before_its_issue_waits_for_it(keyed: tuple[Policy, Keystore]) -> None:
    policy, keystore = keyed
    police = samples.issue(agency="luoshan-police", category="public_security_risk", details={})
    issued, corrected = sealed_chain(
        Desk(policy), keystore, [police, samples.correct(police.listing_id, 1, agency="court")]
    )
    book = ListingBook(policy, AUTHORS)
    read(book, corrected, "listings.court", 0)  # the court's topic happened to be read first
    assert book.state(police.listing_id) is None
    read(book, issued, "listings.luoshan-police", 0)
    state = book.state(police.listing_id)
    assert state is not None and state.envelope.version == 2 and state.measures == ["flight_ban"]


def test_of_two_rival_versions_the_first_in_the_log_stands(keyed: tuple[Policy, Keystore]) -> None:
    policy, keystore = keyed
    issue = samples.issue()
    issued, first = sealed_chain(Desk(policy), keystore, [issue, samples.correct(issue.listing_id, 1)])
    _, rival = sealed_chain(Desk(policy), keystore, [issue, samples.revoke(issue.listing_id, 1)])
    book = ListingBook(policy, AUTHORS)
    for offset, event in enumerate([issued, first, rival]):
        read(book, event, "listings.court", offset)
    assert book.stands(receipt_of(first, Position("listings.court", 0, 1)))
    assert not book.stands(receipt_of(rival, Position("listings.court", 0, 2)))
    recorded = book.receipt("court", rival.envelope.request_id or "")
    assert recorded is not None and recorded.offset == 2  # a retry of the loser is still recognised


def test_a_forged_or_unlawful_event_changes_nothing(keyed: tuple[Policy, Keystore], tmp_path: Path) -> None:
    policy, keystore = keyed
    (genuine,) = sealed_chain(Desk(policy), keystore, [samples.issue()])
    forger = Keystore(tmp_path / "forger")
    forger.create(["court"])
    forged = seal(genuine, "", forger.private("court"))
    unlawful = seal(genuine.model_copy(update={"measures": ["moon_ban"]}), "", keystore.private("court"))
    book = ListingBook(policy, AUTHORS)
    read(book, forged, "listings.court", 0)
    read(book, unlawful, "listings.court", 1)
    assert book.state(genuine.envelope.listing_id) is None and book.ignored == 2
    read(book, genuine, "listings.court", 2)
    assert book.state(genuine.envelope.listing_id) is not None


def test_an_event_on_another_agencys_topic_or_under_another_key_is_not_taken(
    keyed: tuple[Policy, Keystore],
) -> None:
    policy, keystore = keyed
    (issued,) = sealed_chain(Desk(policy), keystore, [samples.issue()])
    book = ListingBook(policy, AUTHORS)
    read(book, issued, "listings.tax-bureau", 0)  # the court's event where only the tax bureau writes
    read(book, issued, "listings.court", 0, key="another-listing")  # so maybe in the wrong partition
    assert book.state(issued.envelope.listing_id) is None and book.ignored == 2
    read(book, issued, "listings.court", 1)
    assert book.state(issued.envelope.listing_id) is not None
