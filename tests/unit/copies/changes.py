"""View rows and the view changes that put them in (or take them out of) a copy, for store tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.core.events import Envelope, Exemption, ViewChanged
from services.core.views import ViewRow, upsert_change, view_event_id

AGENCY = "civil-aviation"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def envelope(listing_id: str, version: int) -> Envelope:
    return Envelope(
        event_id=view_event_id(listing_id, version, AGENCY),
        listing_id=listing_id,
        version=version,
        agency="ledger",
        occurred_at=T0,
        recorded_at=T0,
    )


def row(
    listing_id: str,
    version: int = 1,
    subject_ref: str = "s-1",
    case_ref: str = "case-1",
    exempt: bool = False,
    status: str = "active",
) -> ViewRow:
    exemptions = (
        [Exemption(exemption_id="x-1", measure="flight_ban", starts_at=T0, ends_at=T0 + timedelta(days=3),
                   reason="medical travel")]
        if exempt else []
    )  # fmt: skip
    return ViewRow(
        listing_id=listing_id,
        version=version,
        status=status,  # type: ignore[arg-type]
        subject_ref=subject_ref,
        measures=["flight_ban"],
        fields={"case_ref": case_ref, "display_name": "Y* H**", "issuer": "court"},
        effective_from=T0,
        expires_at=T0 + timedelta(days=365),
        exemptions=exemptions,
    )


def upsert(view_row: ViewRow, agency: str = AGENCY) -> ViewChanged:
    return upsert_change(view_row, envelope(view_row.listing_id, view_row.version), agency, "test")


def delete(listing_id: str, version: int, subject_ref: str = "s-1") -> ViewChanged:
    return ViewChanged(
        envelope=envelope(listing_id, version),
        view_agency=AGENCY,
        op="delete",
        status="revoked",
        subject_ref=subject_ref,
        measures=[],
        fields={},
        effective_from=T0,
        expires_at=T0 + timedelta(days=365),
        exemptions=[],
        reason="revoked (mislisting): test",
    )


def by_reconciler(change: ViewChanged) -> ViewChanged:
    """The same change sent as a reconciler's repair (its own event id, its own envelope agency)."""
    env = change.envelope.model_copy(
        update={"agency": "reconciler", "event_id": f"repair-{change.envelope.event_id}"}
    )
    return change.model_copy(update={"envelope": env})
