"""Every refusal the publisher knows, as (code, how to provoke it), for the unit and broker tiers.

`ISSUE_REFUSALS` each change one field of a valid issue command. `CHANGE_REFUSALS`
take a fresh listing (issued by the court, version 1) and give the steps to run on
it: every step but the last must succeed, the last must be refused with the code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from services.core.commands import AnyCommand, Changes, CorrectCommand
from tests.unit.publisher import samples
from tests.unit.publisher.samples import NATIONAL_ID, NOW

ISSUE_REFUSALS: list[tuple[str, dict[str, Any]]] = [
    ("unknown_measure", {"measures": ["flight_ban", "moon_ban"]}),
    ("no_measure", {"measures": []}),
    ("no_legal_basis", {"legal_basis": "   "}),
    ("unknown_severity", {"severity": "catastrophic"}),
    ("severity_too_low", {"severity": "minor"}),
    ("duration_over_maximum", {"expires_at": NOW + timedelta(days=1826)}),
    ("expires_before_effect", {"expires_at": NOW}),
    (
        "expires_before_decision",
        {
            "effective_from": NOW - timedelta(days=9),
            "notice_served_at": NOW - timedelta(days=20),
            "expires_at": NOW - timedelta(days=1),
        },
    ),
    (
        "minor_subject",
        {
            "birth_date": date(2008, 1, 1),
            "effective_from": NOW - timedelta(days=90),
            "notice_served_at": NOW - timedelta(days=100),
        },
    ),
    ("field_outside_catalogue", {"details": {"court_case": "x", "religion": "none"}}),
    ("field_outside_catalogue", {"category": "social_media_behaviour"}),
    ("minor_subject", {"birth_date": date(2009, 3, 3)}),
    ("student_campus_loan", {"is_full_time_student": True, "debt_kind": "campus_loan"}),
    (
        "student_campus_loan",
        {"is_full_time_student": True, "category": "campus_loan_default", "details": {"lender": "QuickLoan"}},
    ),
    ("force_majeure", {"force_majeure": True}),
    ("notice_not_served", {"notice_served_at": None}),
    (
        "notice_not_served",
        {"notice_served_at": NOW + timedelta(hours=1), "effective_from": NOW + timedelta(days=8)},
    ),
    ("grace_period_not_over", {"notice_served_at": NOW - timedelta(days=3)}),
    ("raw_identifier", {"case_ref": f"debtor {NATIONAL_ID[:6]}-{NATIONAL_ID[6:]}"}),
    ("raw_identifier", {"details": {"court_case": "Yu Zhenhua v. Bank"}}),
    ("unknown_agency", {"agency": "civil-aviation"}),
]


Step = Callable[[list[Any]], AnyCommand]


def _objection(results: list[Any]) -> str:
    """The objection id filed by an earlier step (from a receipt or an ObjectionFiled event)."""
    return next(str(r.objection_id) for r in results if getattr(r, "objection_id", None))


def _one(command: Callable[[str], AnyCommand]) -> Callable[[str], list[Step]]:
    return lambda listing: [lambda _: command(listing)]


def _correct(**changes: Any) -> Callable[[str], list[Step]]:
    return _one(lambda listing: samples.correct(listing, 1, **changes))


def _empty_correction(listing: str) -> AnyCommand:
    return CorrectCommand(
        agency="court", listing_id=listing, expected_version=1, changes=Changes(), reason="x"
    )


def _filed_then(outcome: str, action: str) -> Callable[[str], list[Step]]:
    return lambda listing: [
        lambda _: samples.object_(listing),
        lambda done: samples.resolve(listing, _objection(done), outcome, action),
    ]


# (code, listing_id -> steps): every step but the last must succeed; the last must be refused.
CHANGE_REFUSALS: list[tuple[str, Callable[[str], list[Step]]]] = [
    ("unknown_listing", _one(lambda _: samples.correct("no-such-listing", 1))),
    ("not_issuer", _one(lambda listing: samples.correct(listing, 1, agency="tax-bureau"))),
    ("not_issuer", _one(lambda listing: samples.object_(listing, agency="labour-bureau"))),
    ("stale_version", lambda listing: [
        lambda _: samples.correct(listing, 1), lambda _: samples.revoke(listing, 1)]),
    ("stale_version", lambda listing: [
        lambda _: samples.correct(listing, 1), lambda _: samples.exempt(listing, expected_version=1)]),
    ("stale_version", lambda listing: [
        lambda _: samples.correct(listing, 1), lambda _: samples.object_(listing, expected_version=1)]),
    ("listing_ended", lambda listing: [
        lambda _: samples.revoke(listing, 1), lambda _: samples.correct(listing, 2)]),
    ("empty_correction", _one(_empty_correction)),
    ("unknown_measure", _correct(measures=["moon_ban"])),
    ("duration_over_maximum", _correct(expires_at=NOW + timedelta(days=4000))),
    ("severity_too_low", _correct(severity="minor")),
    ("field_outside_catalogue", _correct(details={"religion": "none"})),
    ("no_legal_basis", _correct(legal_basis="")),
    ("measure_not_cited", _one(lambda listing: samples.exempt(listing, measure="exit_restriction"))),
    ("exemption_window", _one(lambda listing: samples.exempt(listing, starts_at=NOW - timedelta(days=1)))),
    ("exemption_window", _one(lambda listing: samples.exempt(listing, ends_at=NOW + timedelta(days=4000)))),
    ("unknown_objection", _one(lambda listing: samples.resolve(listing, "no-objection", expected_version=1))),
    ("upheld_needs_action", _filed_then("upheld", "none")),
    ("dismissed_takes_no_action", _filed_then("dismissed", "revoke")),
    ("objection_closed", lambda listing: [
        lambda _: samples.object_(listing),
        lambda done: samples.resolve(listing, _objection(done), "dismissed", "none"),
        lambda done: samples.resolve(listing, _objection(done), "upheld", "revoke", expected_version=3)]),
]  # fmt: skip
