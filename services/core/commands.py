"""What a clerk submits: the raw commands of the publisher, before any rule or pseudonym.

Commands carry raw inputs (the national id, the full name, the birth date) because
the rules need them; they never leave the publisher: the events built from them
carry a keyed pseudonym and masked display fields instead. `national_id` and
`full_name` are `SecretStr` so that a log line, a traceback or a repr never
prints them by accident.

Every command names the acting agency and a `request_id`; the event id is derived
from both (`event_id_of`), so a retried command is recognised, never repeated.
"""

from __future__ import annotations

import secrets
import string
import uuid
from datetime import date
from functools import lru_cache
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, model_validator

from services.core.events import Int, RevocationReason
from services.core.ids import name_id

COMMAND_NAMESPACE = uuid.UUID("0b5c3f1e-7d8a-4f26-9e41-6a2d9c7b1f53")
AgencyId = str
DebtKind = Literal["campus_loan", "commercial_loan", "judgment_debt", "tax", "wages", "fine", "other"]


@lru_cache(maxsize=4096)  # a command's ids are asked for many times while it is checked and sent
def event_id_of(agency: str, request_id: str) -> str:
    """Deterministic: the same agency retrying the same request gets the same event id."""
    return name_id(COMMAND_NAMESPACE, f"event|{agency}|{request_id}")


@lru_cache(maxsize=4096)
def listing_id_of(agency: str, request_id: str) -> str:
    """The id of the listing an issue command creates: a retried issue targets the same listing."""
    return name_id(COMMAND_NAMESPACE, f"listing|{agency}|{request_id}")


def _new_request_id() -> str:
    """26 random letters (122 bits). No digits: the screening reads every request id as free text,
    and a uuid's hex could, rarely, spell what a listing's masked id stands for (a spurious
    `raw_identifier` refusal of a correction, about once in 70,000)."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(26))


class Command(BaseModel):
    """Base of every command: immutable, strict about unknown fields, names who acts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agency: AgencyId = Field(min_length=1, description="the acting agency (its key signs the event)")
    request_id: str = Field(
        default_factory=_new_request_id,
        min_length=1,
        max_length=200,
        description="the client's idempotency key: a retry with the same id never publishes twice",
    )

    @property
    def event_id(self) -> str:
        return event_id_of(self.agency, self.request_id)


class IssueCommand(Command):
    """Put a subject under one or more measures (becomes `ListingIssued`)."""

    subject_kind: Literal["person", "organisation"] = "person"
    national_id: SecretStr = Field(description="national id (or unified credit code); pseudonymised")
    full_name: SecretStr = Field(description="full name; only a masked form is published")
    birth_date: date | None = Field(default=None, description="required for a person: minors are not listed")
    is_full_time_student: bool = False
    debt_kind: DebtKind | None = None
    force_majeure: bool = Field(
        default=False, description="the default was caused by force majeure (as the agency established)"
    )
    category: str
    measures: list[str]
    legal_basis: str
    severity: str
    case_ref: str
    details: dict[str, str] = Field(default_factory=dict)
    notice_served_at: AwareDatetime | None = Field(
        default=None, description="when the subject was notified of reasons, basis and rights"
    )
    effective_from: AwareDatetime
    expires_at: AwareDatetime | None = Field(
        default=None, description="omit to expire as late as the measures and the catalogue allow"
    )

    @model_validator(mode="after")
    def _person_has_birth_date(self) -> IssueCommand:
        if self.subject_kind == "person" and self.birth_date is None:
            raise ValueError("a person's birth_date is required (minors may not be listed)")
        return self

    @property
    def listing_id(self) -> str:
        return listing_id_of(self.agency, self.request_id)


class Changes(BaseModel):
    """The fields a correction may change; omitted fields stay as they are."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    measures: list[str] | None = None
    legal_basis: str | None = None
    severity: str | None = None
    full_name: SecretStr | None = Field(default=None, description="a misspelt name; published masked")
    details: dict[str, str] | None = None
    expires_at: AwareDatetime | None = None


class CorrectRequest(Command):
    expected_version: Int = Field(ge=1, description="the version the clerk has seen")
    changes: Changes
    reason: str = Field(min_length=1)


class CorrectCommand(CorrectRequest):
    """Change a listing (becomes `ListingCorrected`); refused unless against its latest version."""

    listing_id: str


class RevokeRequest(Command):
    expected_version: Int = Field(ge=1)
    reason: RevocationReason
    note: str = ""


class RevokeCommand(RevokeRequest):
    """End a listing before its time (becomes `ListingRevoked`)."""

    listing_id: str


class ExemptRequest(Command):
    expected_version: Int = Field(ge=1, description="the version the clerk has seen")
    measure: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str = Field(min_length=1)


class ExemptCommand(ExemptRequest):
    """Suspend one measure for a window, on humanitarian grounds (becomes `ExemptionGranted`)."""

    listing_id: str


class ObjectRequest(Command):
    expected_version: Int = Field(ge=1, description="the version the clerk has seen")
    kind: Literal["objection", "repair"] = "objection"
    grounds: str = Field(min_length=1)


class ObjectCommand(ObjectRequest):
    """Record a subject's objection or repair application (becomes `ObjectionFiled`).

    Its due date is not an input: it is the policy's time limit from the filing.
    """

    listing_id: str


class ResolveRequest(Command):
    expected_version: Int = Field(ge=1, description="the version the clerk has seen")
    outcome: Literal["upheld", "dismissed"]
    required_action: Literal["none", "correct", "revoke"] = "none"
    note: str = ""


class ResolveCommand(ResolveRequest):
    """Answer an objection (becomes `ObjectionResolved`); an upheld one names the action it calls for."""

    listing_id: str
    objection_id: str


ChangeCommand = CorrectCommand | RevokeCommand | ExemptCommand | ObjectCommand | ResolveCommand
AnyCommand = IssueCommand | ChangeCommand
