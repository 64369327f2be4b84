"""Valid commands for the publisher's tests, one keyword away from each refusal.

Shared by the unit and integration tiers: a test changes exactly the field whose
rule it exercises, so a refusal can only come from that rule.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.core.commands import (
    Changes,
    CorrectCommand,
    ExemptCommand,
    IssueCommand,
    ObjectCommand,
    ResolveCommand,
    RevokeCommand,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
NATIONAL_ID = "42010219900517123X"
FULL_NAME = "Yu Zhenhua"
PSEUDONYM_KEY = b"test-pseudonym-key-not-a-secret"


def issue(**changes: Any) -> IssueCommand:
    fields: dict[str, Any] = {
        "agency": "court",
        "national_id": NATIONAL_ID,
        "full_name": FULL_NAME,
        "birth_date": date(1990, 5, 17),
        "debt_kind": "judgment_debt",
        "category": "judgment_default",
        "measures": ["flight_ban", "rail_ban"],
        "legal_basis": "SPC Provisions on Restricting High Consumption (2015), art. 3",
        "severity": "serious",
        "case_ref": "(2026) Hu 0101 Zhi 12",
        "details": {"court_case": "(2025) Hu 0101 Min Chu 7", "amount_owed": "182000"},
        "notice_served_at": NOW - timedelta(days=10),
        "effective_from": NOW,
    }
    return IssueCommand.model_validate({**fields, **changes})


def correct(listing_id: str, expected_version: int, agency: str = "court", **changes: Any) -> CorrectCommand:
    return CorrectCommand(
        agency=agency,
        listing_id=listing_id,
        expected_version=expected_version,
        changes=Changes.model_validate(changes or {"measures": ["flight_ban"]}),
        reason="the rail ban was listed by mistake",
    )


def revoke(listing_id: str, expected_version: int, agency: str = "court") -> RevokeCommand:
    return RevokeCommand.model_validate(
        {
            "agency": agency,
            "listing_id": listing_id,
            "expected_version": expected_version,
            "reason": "mislisting",
            "note": "the bureau confirmed the listing was wrong",
        }
    )


def exempt(
    listing_id: str, agency: str = "court", expected_version: int = 1, **changes: Any
) -> ExemptCommand:
    fields: dict[str, Any] = {
        "agency": agency,
        "listing_id": listing_id,
        "expected_version": expected_version,
        "measure": "flight_ban",
        "starts_at": NOW + timedelta(days=1),
        "ends_at": NOW + timedelta(days=4),
        "reason": "medical treatment in Shanghai",
    }
    return ExemptCommand.model_validate({**fields, **changes})


def object_(listing_id: str, agency: str = "court", expected_version: int = 1) -> ObjectCommand:
    return ObjectCommand(
        agency=agency,
        listing_id=listing_id,
        expected_version=expected_version,
        kind="objection",
        grounds="I am not the debtor",
    )


def resolve(
    listing_id: str,
    objection_id: str,
    outcome: str = "upheld",
    action: str = "revoke",
    agency: str = "court",
    expected_version: int = 2,
) -> ResolveCommand:
    """Resolve an objection; by default the one filed on version 1, so against version 2."""
    return ResolveCommand.model_validate(
        {
            "agency": agency,
            "listing_id": listing_id,
            "expected_version": expected_version,
            "objection_id": objection_id,
            "outcome": outcome,
            "required_action": action,
            "note": "reviewed within the time limit",
        }
    )


def issue_line(n: int, now: datetime, **changes: Any) -> dict[str, Any]:
    """Line `n` of an import file (`accord publish import`): an issue of its own subject, as JSON."""
    return {
        "command": "issue",
        "national_id": f"4201021990{n:08d}",
        "full_name": f"Subject Number{n}",
        "birth_date": "1990-05-17",
        "category": "judgment_default",
        "measures": ["flight_ban", "rail_ban"],
        "legal_basis": "SPC Provisions on Restricting High Consumption (2015), art. 3",
        "severity": "serious",
        "case_ref": f"(2026) Hu 0101 Zhi {n}",
        "notice_served_at": (now - timedelta(days=10)).isoformat(),
        "effective_from": now.isoformat(),
        **changes,
    }
