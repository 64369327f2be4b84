"""The publisher on the real broker: whole paths, retries, races and what the bytes carry."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from services.core.commands import AnyCommand
from services.core.crypto import AgencyKey, Keystore, normalise_national_id
from services.core.errors import ConflictError
from services.core.events import ExemptionGranted, ListingIssued, ObjectionFiled, ObjectionResolved
from services.core.kafka import decode_message, read_all
from services.core.sealing import check_seal
from services.core.serde import Decoded
from services.core.topics import BACKBONE
from services.publisher.client import Publisher
from services.publisher.errors import LedgerConflict, LedgerRefusal
from services.publisher.state import Receipt
from tests.integration.publisher.conftest import WAIT, Backbone
from tests.unit.publisher import samples
from tests.unit.publisher.samples import FULL_NAME, NATIONAL_ID, NOW, PSEUDONYM_KEY


def of_listing(backbone: Backbone, listing_id: str) -> list[Decoded]:
    return sorted(backbone.published(listing_id), key=lambda d: d.event.envelope.version)


def same_event(receipt: Receipt) -> dict[str, object]:
    """What a receipt says of its event, whoever answers (a retry from the ledger knows no offset)."""
    return receipt.model_dump(exclude={"topic", "partition", "offset", "duplicate"})


def assert_sealed_chain(backbone: Backbone, events: list[Decoded]) -> None:
    """Versions 1..n, each linked to the one before and signed by the agency that sent it."""
    assert [d.event.envelope.version for d in events] == list(range(1, len(events) + 1))
    previous = ""
    for decoded in events:
        env = decoded.event.envelope
        assert env.prev_hash == previous
        assert check_seal(decoded, backbone.policy.agency_by_id[env.agency].public_key) is None
        previous = env.hash


def test_issue_correct_revoke_lands_in_each_agencys_topic_as_one_chain(backbone: Backbone) -> None:
    publisher, court = backbone.publisher(agency="luoshan-police"), backbone.publisher()
    police = samples.issue(agency="luoshan-police", category="public_security_risk", details={})
    issued = publisher.issue(police)
    corrected = court.correct(samples.correct(issued.listing_id, 1, agency="court"))
    revoked = publisher.revoke(samples.revoke(issued.listing_id, 2, agency="luoshan-police"))
    assert [issued.version, corrected.version, revoked.version] == [1, 2, 3]
    assert issued.topic == backbone.topics.listings("luoshan-police")
    assert corrected.topic == backbone.topics.listings("court")
    events = of_listing(backbone, issued.listing_id)
    assert [type(d.event).__name__ for d in events] == ["ListingIssued", "ListingCorrected", "ListingRevoked"]
    assert_sealed_chain(backbone, events)
    keyed = {m.key() for m in read_all(backbone.connection, backbone.listing_topics)
             if decode_message(m).event.envelope.listing_id == issued.listing_id}  # fmt: skip
    assert keyed == {issued.listing_id.encode()}
    state = publisher.current(issued.listing_id)
    assert state is not None and state.status == "revoked" and state.measures == ["flight_ban"]


def test_an_objection_is_due_by_policy_and_its_upheld_resolution_names_the_action(backbone: Backbone) -> None:
    publisher = backbone.publisher()
    listing = publisher.issue(samples.issue()).listing_id
    filed = publisher.object(samples.object_(listing))
    assert filed.objection_id is not None
    state = publisher.current(listing)
    assert state is not None and state.status == "disputed"
    publisher.resolve(samples.resolve(listing, filed.objection_id, "upheld", "revoke"))
    publisher.revoke(samples.revoke(listing, 3))
    events = of_listing(backbone, listing)
    objection, resolution = events[1].event, events[2].event
    assert isinstance(objection, ObjectionFiled) and isinstance(resolution, ObjectionResolved)
    assert objection.due_at == NOW + timedelta(days=backbone.policy.redress.objection_due_days)
    assert (resolution.outcome, resolution.required_action) == ("upheld", "revoke")
    assert_sealed_chain(backbone, events)


def test_an_exemption_suspends_one_cited_measure_for_its_window(backbone: Backbone) -> None:
    publisher = backbone.publisher()
    listing = publisher.issue(samples.issue()).listing_id
    granted = publisher.exempt(samples.exempt(listing))
    (_, decoded) = of_listing(backbone, listing)
    assert isinstance(decoded.event, ExemptionGranted)
    assert decoded.event.exemption.exemption_id == granted.exemption_id
    assert decoded.event.exemption.covers("flight_ban", NOW + timedelta(days=2))
    assert not decoded.event.exemption.covers("rail_ban", NOW + timedelta(days=2))


def test_a_retried_request_is_answered_from_the_log_even_after_a_restart(backbone: Backbone) -> None:
    first = backbone.publisher()
    issue = samples.issue()
    original = first.issue(issue)
    correction = samples.correct(original.listing_id, 1)
    corrected = first.correct(correction)
    again = first.issue(issue)
    assert again.duplicate and same_event(again) == same_event(original)
    restarted = backbone.publisher()  # a new process knows only what the ledger says
    answered: list[tuple[AnyCommand, Receipt]] = [(issue, original), (correction, corrected)]
    for command, receipt in answered:
        answer = restarted.submit(command)
        assert answer.duplicate and same_event(answer) == same_event(receipt)
    ids = [d.event.envelope.event_id for d in backbone.published(original.listing_id)]
    assert sorted(ids) == sorted([original.event_id, corrected.event_id])


def test_of_concurrent_corrections_against_one_version_exactly_one_wins(backbone: Backbone) -> None:
    publisher = backbone.publisher()
    listing = publisher.issue(samples.issue()).listing_id
    clerks = [samples.correct(listing, 1, legal_basis=f"basis as read by clerk {n}") for n in range(6)]
    start = threading.Barrier(len(clerks))

    def attempt(command: object) -> Receipt | ConflictError:
        start.wait()
        try:
            return publisher.correct(command)  # type: ignore[arg-type]
        except ConflictError as lost:
            return lost

    with ThreadPoolExecutor(len(clerks)) as pool:
        outcomes = list(pool.map(attempt, clerks))
    winners = [o for o in outcomes if isinstance(o, Receipt)]
    assert len(winners) == 1 and winners[0].version == 2
    assert sum(isinstance(o, ConflictError) for o in outcomes) == len(clerks) - 1
    assert [d.event.envelope.version for d in of_listing(backbone, listing)] == [1, 2]


def race(backbone: Backbone, commands: Sequence[AnyCommand]) -> list[Receipt | ConflictError]:
    """Each command from a publisher process of its own agency, all of them reading the listing
    before any writes (the clock is read between the two): what each one answered."""
    all_have_read = threading.Barrier(len(commands), timeout=30)

    def clock_after_rivals_read() -> datetime:
        all_have_read.wait()
        return NOW

    racers = [backbone.publisher(clock_after_rivals_read, agency=c.agency) for c in commands]

    def attempt(n: int) -> Receipt | ConflictError:
        try:
            return racers[n].submit(commands[n])
        except ConflictError as lost:
            return lost

    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(attempt, range(len(commands))))


def test_two_publisher_processes_racing_on_one_version_learn_who_won(backbone: Backbone) -> None:
    """Both read version 1 before either writes (the clock is read between the two)."""
    listing = backbone.publisher().issue(samples.issue()).listing_id
    outcomes = race(backbone, [samples.correct(listing, 1), samples.revoke(listing, 1)])
    (winner,) = [o for o in outcomes if isinstance(o, Receipt)]
    (loser,) = [o for o in outcomes if isinstance(o, ConflictError)]
    assert isinstance(loser, LedgerConflict) and loser.code == "version_conflict"  # the ledger's word
    messages = read_all(backbone.connection, [str(winner.topic)])
    in_log = [
        (m.offset(), e) for m in messages if (e := decode_message(m).event.envelope).listing_id == listing
    ]
    assert sorted(env.version for _, env in in_log) == [1, 2, 2]  # the loser's event is there too...
    first_v2 = min((offset, env) for offset, env in in_log if env.version == 2)[1]
    assert first_v2.event_id == winner.event_id  # ...after the winner's, in the order the ledger reads
    observer = backbone.publisher().current(listing)
    assert observer is not None and observer.event_ids[-1] == winner.event_id


def every_byte(message: Any) -> bytes:
    """Key, value and headers: all a reader of the topic could see."""
    headers = b"".join(value or b"" for _, value in message.headers() or [])
    return bytes(message.key() or b"") + bytes(message.value() or b"") + headers


@pytest.mark.parametrize("agency", ["court", "luoshan-police"])
def test_no_raw_national_id_or_name_ever_reaches_a_topic(backbone: Backbone, agency: str) -> None:
    publisher = backbone.publisher(agency=agency)  # each agency's publisher as its own principal
    details = {"court_case": "(2025) Hu 0101 Min Chu 7"} if agency == "court" else {}
    category = "judgment_default" if agency == "court" else "public_security_risk"
    issued = publisher.issue(samples.issue(agency=agency, category=category, details=details))
    publisher.correct(samples.correct(issued.listing_id, 1, agency=agency, full_name=FULL_NAME))
    everything = read_all(backbone.connection, backbone.listing_topics)
    messages = [m for m in everything if m.key() == issued.listing_id.encode()]
    assert len(messages) == 2
    wire = b"".join(every_byte(m) for m in messages)
    secrets = [NATIONAL_ID, normalise_national_id(NATIONAL_ID), NATIONAL_ID.lower(), FULL_NAME, "Zhenhua"]
    assert not [s for s in secrets if s.encode() in wire]
    first = next(d for d in backbone.published(issued.listing_id) if isinstance(d.event, ListingIssued)).event
    assert isinstance(first, ListingIssued)
    assert first.display_name == "Y* Z******" and first.subject_ref.startswith("s-")


def test_bad_bytes_and_transaction_markers_in_the_ledgers_topics_neither_stop_nor_fool_it(
    backbone: Backbone,
) -> None:
    """Garbage on a listing topic (the ledger refuses it into `rejected`, undecodable) and on `ledger`
    itself, each inside a transaction whose commit marker is an offset no reader receives."""
    writer = Producer(backbone.connection.client_config(**{"transactional.id": f"tx-{uuid.uuid4()}"}))
    writer.init_transactions(30)
    writer.begin_transaction()
    writer.produce(backbone.topics.listings(BACKBONE), key=b"garbage", value=b"\x00not an event")
    writer.produce(backbone.topics.ledger, key=b"garbage", value=b"\x00not a state")
    writer.commit_transaction(30)
    publisher = backbone.publisher()
    receipt = publisher.issue(samples.issue())
    assert receipt.version == 1 and receipt.status == "admitted"
    assert publisher.current(receipt.listing_id) is not None
    assert publisher._reader.undecodable >= 1


def test_a_race_between_two_agencies_topics_tells_the_refused_clerk_so(backbone: Backbone) -> None:
    """The police and a court both correct version 1, each on its own topic: no common log order.
    The ledger admits one; the other clerk hears the ledger's refusal, never "published"."""
    police = samples.issue(agency="luoshan-police", category="public_security_risk", details={})
    listing = backbone.publisher(agency="luoshan-police").issue(police).listing_id
    commands = [
        samples.correct(listing, 1, agency="luoshan-police"),
        samples.correct(listing, 1, agency="court"),
    ]
    outcomes = race(backbone, commands)
    (winner,) = [o for o in outcomes if isinstance(o, Receipt)]
    (loser,) = [o for o in outcomes if isinstance(o, LedgerConflict)]
    assert loser.code == "version_conflict" and "ledger refused" in loser.message
    state = backbone.publisher().current(listing)
    assert state is not None and state.envelope.version == 2 and state.event_ids[-1] == winner.event_id
    second = {d.event.envelope.agency for d in of_listing(backbone, listing) if d.event.envelope.version == 2}
    assert second == {"luoshan-police", "court"}  # both events are in the log; only one stands


def test_an_event_the_ledger_refuses_for_its_own_reason_is_reported_with_that_reason(
    backbone: Backbone, tmp_path: Path
) -> None:
    """A publisher signing with a key the backbone does not know: its own rules pass, the ledger's
    signature check does not. The clerk gets the ledger's code and sentence, not a receipt."""
    rogue_keys = Keystore(tmp_path / "rogue")
    rogue_keys.create(["court"])
    signer = AgencyKey("court", rogue_keys.private("court"))
    court = backbone.ledger.connection_as("court")
    rogue = Publisher(court, backbone.topics, backbone.policy, signer, PSEUDONYM_KEY,
                      timeout=WAIT, clock=lambda: NOW, decision_wait=WAIT)  # fmt: skip
    backbone.opened.append(rogue)
    command = samples.issue()
    with pytest.raises(LedgerRefusal) as refused:
        rogue.issue(command)
    assert refused.value.code == "bad_signature" and refused.value.event_id == command.event_id
    assert "ledger refused" in refused.value.message
    assert not isinstance(refused.value, ConflictError)
    with pytest.raises(LedgerRefusal):  # a retry is answered from `rejected`, not published again
        backbone.publisher().issue(command)
    assert len(backbone.published(command.listing_id)) == 1
