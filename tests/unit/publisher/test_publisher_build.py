"""Commands become events with pseudonyms, masked fields, deterministic ids and policy dates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.core.commands import event_id_of, listing_id_of
from services.core.crypto import normalise_national_id, pseudonymise
from services.core.events import ListingCorrected, ListingIssued, ObjectionFiled
from services.core.sealing import seal
from services.core.serde import encode
from tests.support.factory import policy_with_keys
from tests.unit.publisher import samples
from tests.unit.publisher.desk import Desk
from tests.unit.publisher.samples import FULL_NAME, NATIONAL_ID, NOW, PSEUDONYM_KEY


def test_an_issue_carries_a_pseudonym_and_masked_display_fields_only() -> None:
    command = samples.issue()
    event = Desk().submit(command)
    assert isinstance(event, ListingIssued)
    assert event.subject_ref == pseudonymise(NATIONAL_ID, PSEUDONYM_KEY)
    assert event.display_name == "Y* Z******"
    assert event.display_id == "420*************3X"
    assert event.envelope.listing_id == listing_id_of("court", command.request_id)
    assert event.envelope.event_id == event_id_of("court", command.request_id)
    assert event.envelope.request_id == command.request_id
    assert event.envelope.version == 1


def test_no_raw_identifier_survives_into_the_sealed_bytes(tmp_path: Path) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    desk = Desk(policy)
    issued = desk.submit(samples.issue())
    corrected = desk.submit(samples.correct(issued.envelope.listing_id, 1, full_name=FULL_NAME))
    for event in (issued, corrected):
        wire = encode(seal(event, "", keystore.private("court")))
        for secret in (NATIONAL_ID, normalise_national_id(NATIONAL_ID), FULL_NAME, "Zhenhua"):
            assert secret.encode() not in wire
    assert isinstance(corrected, ListingCorrected) and corrected.display_name == "Y* Z******"


def test_an_issue_without_expiry_expires_when_policy_says() -> None:
    event = Desk().submit(samples.issue(measures=["flight_ban", "procurement_ban"]))
    assert isinstance(event, ListingIssued)
    assert event.expires_at == NOW + timedelta(days=1095)  # procurement_ban's maximum


def test_an_objection_is_due_within_the_policy_limit() -> None:
    desk = Desk()
    listing = desk.submit(samples.issue()).envelope.listing_id
    filed = desk.submit(samples.object_(listing))
    assert isinstance(filed, ObjectionFiled)
    assert filed.due_at == NOW + timedelta(days=desk.policy.redress.objection_due_days)


def test_a_retried_command_builds_the_very_same_event_and_ids() -> None:
    """Two publishers (or one after a restart) turn the same requests into identical events."""
    issue = samples.issue()
    first, second = Desk(), Desk()
    assert first.submit(issue) == second.submit(issue)
    for command in (samples.object_(issue.listing_id), samples.exempt(issue.listing_id, expected_version=2)):
        made = first.submit(command)
        assert made == second.submit(command)
        assert made.envelope.event_id == event_id_of("court", command.request_id)
    granted = first.states[issue.listing_id].exemptions[0]
    assert granted.exemption_id not in ("", issue.event_id)
