"""The publisher on the real broker: whole paths, retries, races and what the bytes carry."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Producer

from services.core.commands import AnyCommand
from services.core.crypto import check_seal, normalise_national_id
from services.core.errors import ConflictError
from services.core.events import ExemptionGranted, ListingIssued, ObjectionFiled, ObjectionResolved
from services.core.kafka import decode_message, read_all
from services.core.serde import Decoded
from services.core.topics import BACKBONE
from services.publisher.state import Receipt
from tests.integration.publisher.conftest import Backbone
from tests.unit.publisher import samples
from tests.unit.publisher.samples import FULL_NAME, NATIONAL_ID, NOW


def of_listing(backbone: Backbone, listing_id: str) -> list[Decoded]:
    events = [d for d in backbone.published() if d.event.envelope.listing_id == listing_id]
    return sorted(events, key=lambda d: d.event.envelope.version)


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
    keys = {m.key() for m in read_all(backbone.connection, backbone.listing_topics)}
    assert keys == {issued.listing_id.encode()}
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
    assert first.issue(issue) == original.model_copy(update={"duplicate": True})
    restarted = backbone.publisher()  # a new process knows only what the log says
    assert restarted.issue(issue) == original.model_copy(update={"duplicate": True})
    assert restarted.correct(correction) == corrected.model_copy(update={"duplicate": True})
    ids = [d.event.envelope.event_id for d in backbone.published()]
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


def test_two_publisher_processes_racing_on_one_version_learn_who_won(backbone: Backbone) -> None:
    """Both read version 1 before either writes (the clock is read between the two)."""
    listing = backbone.publisher().issue(samples.issue()).listing_id
    both_have_read = threading.Barrier(2, timeout=30)

    def clock_after_rival_read() -> datetime:
        both_have_read.wait()
        return NOW

    racers = [backbone.publisher(clock_after_rival_read) for _ in range(2)]
    commands: list[AnyCommand] = [samples.correct(listing, 1), samples.revoke(listing, 1)]

    def attempt(n: int) -> Receipt | ConflictError:
        try:
            return racers[n].submit(commands[n])
        except ConflictError as lost:
            return lost

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(attempt, range(2)))
    (winner,) = [o for o in outcomes if isinstance(o, Receipt)]
    assert sum(isinstance(o, ConflictError) for o in outcomes) == 1
    in_log = [
        (m.offset(), decode_message(m).event.envelope) for m in read_all(backbone.connection, [winner.topic])
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
    publisher = backbone.publisher(agency=agency)
    details = {"court_case": "(2025) Hu 0101 Min Chu 7"} if agency == "court" else {}
    category = "judgment_default" if agency == "court" else "public_security_risk"
    issued = publisher.issue(samples.issue(agency=agency, category=category, details=details))
    publisher.correct(samples.correct(issued.listing_id, 1, agency=agency, full_name=FULL_NAME))
    messages = list(read_all(backbone.connection, backbone.listing_topics))
    assert len(messages) == 2
    wire = b"".join(every_byte(m) for m in messages)
    secrets = [NATIONAL_ID, normalise_national_id(NATIONAL_ID), NATIONAL_ID.lower(), FULL_NAME, "Zhenhua"]
    assert not [s for s in secrets if s.encode() in wire]
    first = next(d for d in backbone.published() if isinstance(d.event, ListingIssued)).event
    assert isinstance(first, ListingIssued)
    assert first.display_name == "Y* Z******" and first.subject_ref.startswith("s-")


def test_bad_bytes_and_transaction_markers_in_a_listing_topic_neither_stop_nor_fool_it(
    backbone: Backbone,
) -> None:
    """Another writer's transaction leaves a commit marker (an offset no reader receives)."""
    writer = Producer(backbone.connection.client_config(**{"transactional.id": f"tx-{uuid.uuid4()}"}))
    writer.init_transactions(30)
    writer.begin_transaction()
    writer.produce(backbone.topics.listings(BACKBONE), key=b"garbage", value=b"\x00not an event")
    writer.commit_transaction(30)
    publisher = backbone.publisher()
    receipt = publisher.issue(samples.issue())
    assert receipt.version == 1 and publisher.book.ignored == 0
    assert publisher.current(receipt.listing_id) is not None
