"""The event contract as pydantic models, mirroring `schemas/avro/<current>/` field by field.

`schemas/` is the source of truth; `tests/unit/core/test_events_match_schemas.py`
fails if a model and its Avro schema disagree. Models are frozen: an event, once
made, is a fact.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Avro's `int` and `long` are 32- and 64-bit; fastavro writes any Python int without
# complaint, so the bounds live here: an out-of-range value fails when the event is made.
Int = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Long = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class Model(BaseModel):
    """Base of every contract model: immutable, and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Envelope(Model):
    """Shared by every event; see `accord.Envelope.avsc` for what each field means."""

    event_id: str
    listing_id: str
    version: Int
    agency: str
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    prev_hash: str = ""
    hash: str = ""
    signature: str = ""
    request_id: str | None = None


class Event(Model):
    """An envelope plus a typed payload. Subclasses are the Avro records of the same name."""

    envelope: Envelope


class RevocationReason(StrEnum):
    MISLISTING = "mislisting"
    REPAIRED = "repaired"
    COURT_ORDER = "court_order"
    OBLIGATION_FULFILLED = "obligation_fulfilled"
    OTHER = "other"


class Exemption(Model):
    exemption_id: str
    measure: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str

    def covers(self, measure: str, at: datetime) -> bool:
        """True when this exemption suspends `measure` at time `at`."""
        return self.measure == measure and self.starts_at <= at < self.ends_at


class Objection(Model):
    objection_id: str
    kind: str
    due_at: AwareDatetime
    outcome: str | None = None


class ListingIssued(Event):
    subject_ref: str
    subject_kind: str
    display_name: str
    display_id: str
    category: str
    measures: list[str]
    legal_basis: str
    severity: str
    case_ref: str
    details: dict[str, str]
    notice_served_at: AwareDatetime
    effective_from: AwareDatetime
    expires_at: AwareDatetime


class ListingCorrected(Event):
    expected_version: Int
    reason: str
    measures: list[str] | None = None
    legal_basis: str | None = None
    severity: str | None = None
    display_name: str | None = None
    details: dict[str, str] | None = None
    expires_at: AwareDatetime | None = None


class ListingRevoked(Event):
    expected_version: Int
    reason: RevocationReason
    note: str


class ListingExpired(Event):
    expired_at: AwareDatetime


class ExemptionGranted(Event):
    expected_version: Int
    exemption: Exemption


class ObjectionFiled(Event):
    expected_version: Int
    objection_id: str
    kind: Literal["objection", "repair"]
    grounds: str
    due_at: AwareDatetime


class ObjectionResolved(Event):
    expected_version: Int
    objection_id: str
    outcome: Literal["upheld", "dismissed"]
    required_action: Literal["none", "correct", "revoke"]
    note: str


class CopyApplied(Event):
    copy_agency: str
    op: Literal["upsert", "delete"]
    partition: Int
    offset: Long
    row_hash: str
    applied_at: AwareDatetime


class CopyDigest(Event):
    copy_agency: str
    rows: Long
    root: str
    buckets: list[str]
    positions: dict[str, Long]
    taken_at: AwareDatetime


class Finding(Event):
    finding_id: str
    kind: str
    copy_agency: str
    expected_version: Int
    copy_version: Int | None = None
    detail: str
    since: AwareDatetime | None = None
    detected_at: AwareDatetime


class Rejected(Event):
    source_topic: str
    partition: Int
    offset: Long
    reason_code: str
    reason: str
    payload: bytes


class ViewChanged(Event):
    view_agency: str
    op: Literal["upsert", "delete"]
    status: str
    subject_ref: str
    measures: list[str]
    fields: dict[str, str]
    effective_from: AwareDatetime
    expires_at: AwareDatetime
    exemptions: list[Exemption]
    reason: str


class ListingState(Event):
    issuer: str
    status: Literal["active", "disputed", "revoked", "expired"]
    subject_ref: str
    subject_kind: str
    display_name: str
    display_id: str
    category: str
    measures: list[str]
    legal_basis: str
    severity: str
    case_ref: str
    details: dict[str, str]
    notice_served_at: AwareDatetime
    effective_from: AwareDatetime
    expires_at: AwareDatetime
    exemptions: list[Exemption]
    objections: list[Objection]
    end_reason: str
    event_ids: list[str]


# Events an agency (or the backbone, for expiry) writes to a listing topic: they change a listing.
ListingEvent = (
    ListingIssued
    | ListingCorrected
    | ListingRevoked
    | ListingExpired
    | ExemptionGranted
    | ObjectionFiled
    | ObjectionResolved
)
LISTING_EVENTS: tuple[type[Event], ...] = (
    ListingIssued,
    ListingCorrected,
    ListingRevoked,
    ListingExpired,
    ExemptionGranted,
    ObjectionFiled,
    ObjectionResolved,
)
BACKBONE_EVENTS: tuple[type[Event], ...] = (
    CopyApplied,
    CopyDigest,
    Finding,
    Rejected,
    ViewChanged,
    ListingState,
)
ALL_EVENTS: dict[str, type[Event]] = {cls.__name__: cls for cls in LISTING_EVENTS + BACKBONE_EVENTS}
