"""One fixed instance of every event type: the golden-bytes files are their encodings.

Values are chosen to reach every corner of the wire format at least once: both
branches of optional fields, non-ASCII text, non-UTF-8 bytes, negative and 64-bit
numbers, times before the epoch and with sub-second precision. Change a sample only
together with its golden file, on purpose.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.core.events import (
    CopyApplied,
    CopyDigest,
    Envelope,
    Event,
    Exemption,
    ExemptionGranted,
    Finding,
    ListingCorrected,
    ListingExpired,
    ListingIssued,
    ListingRevoked,
    ListingState,
    Objection,
    ObjectionFiled,
    ObjectionResolved,
    Rejected,
    RevocationReason,
    ViewChanged,
)
from services.core.serde import MARKER, body_bytes, registry, to_record

T = datetime(2020, 10, 19, 8, 30, 15, 123456, tzinfo=UTC)
LISTING = "luoshan-police:2016-0042"


def envelope(n: int, agency: str = "luoshan-police", request_id: str | None = None) -> Envelope:
    """The n-th event of the sample listing, with a fixed id and a chain of fixed hashes."""
    return Envelope(
        event_id=f"00000000-0000-4000-8000-{n:012d}",
        listing_id=LISTING,
        version=n,
        agency=agency,
        occurred_at=T + timedelta(days=n),
        recorded_at=T + timedelta(days=n, microseconds=7),
        prev_hash="" if n == 1 else f"{n - 1:064x}",
        hash=f"{n:064x}",
        signature=f"c2lnbmF0dXJl{n}==",
        request_id=request_id,
    )


EXEMPTION = Exemption(
    exemption_id="ex-1",
    measure="flight_ban",
    starts_at=T + timedelta(days=30),
    ends_at=T + timedelta(days=33),
    reason="medical travel to Wuhan",
)

ISSUED = ListingIssued(
    envelope=envelope(1, request_id="req-issue-1"),
    subject_ref="s-" + "ab" * 20,
    subject_kind="person",
    display_name="Y* H**",
    display_id="420***********12",
    category="public_security_risk",
    measures=["flight_ban", "rail_ban"],
    legal_basis="Public Security Administration Punishment Law, art. 2",
    severity="serious",
    case_ref="罗公(2016)42号",
    details={"bureau_case": "2016-0042", "risk_basis": "petitioning"},
    notice_served_at=datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    effective_from=T,
    expires_at=T + timedelta(days=1825),
)

SAMPLES: dict[str, Event] = {
    "ListingIssued": ISSUED,
    "ListingCorrected": ListingCorrected(
        envelope=envelope(2),
        expected_version=1,
        reason="rail ban was never ordered",
        measures=["flight_ban"],
        display_name="余**",
        details={},
        expires_at=T + timedelta(days=365),
    ),
    "ListingRevoked": ListingRevoked(
        envelope=envelope(7, request_id="req-revoke"),
        expected_version=6,
        reason=RevocationReason.MISLISTING,
        note="the bureau admits the listing was wrong",
    ),
    "ListingExpired": ListingExpired(envelope=envelope(8, agency="backbone"), expired_at=T),
    "ExemptionGranted": ExemptionGranted(envelope=envelope(3), expected_version=2, exemption=EXEMPTION),
    "ObjectionFiled": ObjectionFiled(
        envelope=envelope(4),
        expected_version=3,
        objection_id="obj-2017-1",
        kind="objection",
        grounds="I was never notified",
        due_at=T + timedelta(days=15),
    ),
    "ObjectionResolved": ObjectionResolved(
        envelope=envelope(5, agency="court"),
        expected_version=4,
        objection_id="obj-2017-1",
        outcome="upheld",
        required_action="revoke",
        note="",
    ),
    "CopyApplied": CopyApplied(
        envelope=envelope(2, agency="copies.civil-aviation"),
        copy_agency="civil-aviation",
        op="upsert",
        partition=2,
        offset=2**40 + 3,
        row_hash="f" * 64,
        applied_at=T,
    ),
    "CopyDigest": CopyDigest(
        envelope=envelope(0, agency="copies.railway").model_copy(update={"listing_id": ""}),
        copy_agency="railway",
        rows=2**33,
        root="0" * 64,
        buckets=["1" * 64, "2" * 64],
        positions={"0": 0, "1": 17, "2": -1},
        taken_at=T,
    ),
    "Finding": Finding(
        envelope=envelope(7, agency="reconciler"),
        finding_id="finding-1",
        kind="stale_copy",
        copy_agency="civil-aviation",
        expected_version=7,
        copy_version=1,
        detail="copy still holds version 1: the revocation was never applied",
        since=None,
        detected_at=datetime(2021, 3, 1, tzinfo=UTC),
    ),
    "Rejected": Rejected(
        envelope=envelope(9, agency="ledger"),
        source_topic="listings.luoshan-police",
        partition=0,
        offset=-1,
        reason_code="bad_signature",
        reason="the signature is not luoshan-police's",
        payload=b"\xc3\x01\xff\x00garbage\x80",
    ),
    "ViewChanged": ViewChanged(
        envelope=envelope(3, agency="ledger"),
        view_agency="civil-aviation",
        op="upsert",
        status="disputed",
        subject_ref="s-" + "ab" * 20,
        measures=["flight_ban"],
        fields={"display_name": "余**", "issuer": "luoshan-police"},
        effective_from=T,
        expires_at=T + timedelta(days=365),
        exemptions=[EXEMPTION],
        reason="version 3",
    ),
    "ListingState": ListingState(
        envelope=envelope(5, agency="court"),
        issuer="luoshan-police",
        status="active",
        subject_ref=ISSUED.subject_ref,
        subject_kind="person",
        display_name="余**",
        display_id=ISSUED.display_id,
        category=ISSUED.category,
        measures=["flight_ban"],
        legal_basis=ISSUED.legal_basis,
        severity="serious",
        case_ref=ISSUED.case_ref,
        details={},
        notice_served_at=ISSUED.notice_served_at,
        effective_from=T,
        expires_at=T + timedelta(days=365),
        exemptions=[EXEMPTION],
        objections=[
            Objection(objection_id="obj-2017-1", kind="objection", due_at=T, outcome="upheld"),
            Objection(objection_id="obj-2018-1", kind="repair", due_at=T),
        ],
        end_reason="",
        event_ids=[f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 6)],
    ),
}


def as_written_by(version: int, event: Event) -> Event:
    """What `event` reads as when it was written with schema version `version`.

    v1 had no `request_id`: resolution fills in its default. A new version that adds
    fields adds a line here.
    """
    if version == 1:
        return event.model_copy(update={"envelope": event.envelope.model_copy(update={"request_id": None})})
    return event


def encode_with(version: int, event: Event) -> bytes:
    """`event` as a producer still on schema version `version` writes it (fields it lacks dropped)."""
    writer = registry().versions[version][type(event).__name__]
    return MARKER + writer.fingerprint + body_bytes(writer.schema, to_record(event))
