"""What one agency is entitled to see of a listing: its view row, and the view changes to emit.

The ledger emits `view_changes` to `views.<agency>`; copies store `ViewRow`s; the
reconciler and audit recompute expected views with `project`. One function, so
the three can never disagree about what a copy should hold.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from functools import cache
from typing import Any, Literal

from pydantic import AwareDatetime, TypeAdapter

from services.core.events import Envelope, Exemption, ListingState, Model, ViewChanged
from services.core.policy import Policy

LIVE = ("active", "disputed")
WITHDRAWN = "withdrawn"  # a delete's status when the listing lives on but the agency lost entitlement
VIEW_NAMESPACE = uuid.UUID("6f1d8a52-3c55-4c6e-9a57-2f8c0b8f4e11")
_NAMESPACE_BYTES = VIEW_NAMESPACE.bytes
# Listing attributes an agency may be entitled to, by the name used in agencies.yaml.
# Catalogue detail fields are entitled as "details.<field>".
ATTRIBUTE_FIELDS = (
    "display_name",
    "display_id",
    "subject_kind",
    "category",
    "legal_basis",
    "severity",
    "case_ref",
    "issuer",
)


class ViewRow(Model):
    """One listing as one agency's copy must hold it."""

    listing_id: str
    version: int
    status: Literal["active", "disputed"]
    subject_ref: str
    measures: list[str]
    fields: dict[str, str]
    effective_from: AwareDatetime
    expires_at: AwareDatetime
    exemptions: list[Exemption]

    def row_hash(self) -> str:
        """Hash of everything the row says: any altered field changes it."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    def canonical(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_change(cls, change: ViewChanged) -> ViewRow:
        """The row an upsert asks a copy to hold."""
        return cls(
            listing_id=change.envelope.listing_id,
            version=change.envelope.version,
            status=change.status,  # type: ignore[arg-type]  # upserts carry live statuses only
            subject_ref=change.subject_ref,
            measures=change.measures,
            fields=change.fields,
            effective_from=change.effective_from,
            expires_at=change.expires_at,
            exemptions=change.exemptions,
        )


def row_data(change: ViewChanged) -> dict[str, Any]:
    """`ViewRow.from_change(change).model_dump(mode="json")`, no row model built: the row's fields are
    the change's, of the same types, validated when it was decoded. Strings, numbers and the lists
    and maps of strings are their JSON data already; only the times and the exemptions are dumped,
    by pydantic, in one call (a dump of the change itself, filtered by `include`, cost 2.6 times
    as much). The row's one narrower rule, a live status, is the caller's to check (a copy refuses
    others first)."""
    env = change.envelope
    effective_from, expires_at, exemptions = _ROW_TIMES.dump_python(
        (change.effective_from, change.expires_at, change.exemptions), mode="json"
    )
    return {
        "listing_id": env.listing_id,
        "version": env.version,
        "status": change.status,
        "subject_ref": change.subject_ref,
        "measures": list(change.measures),
        "fields": dict(change.fields),
        "effective_from": effective_from,
        "expires_at": expires_at,
        "exemptions": exemptions,
    }


_ROW_TIMES = TypeAdapter(tuple[AwareDatetime, AwareDatetime, list[Exemption]])


def entitled_fields(state: ListingState, allowed: list[str]) -> dict[str, str]:
    """The listing's fields that an agency allowed `allowed` may see, as strings, sorted by name."""
    fields: dict[str, str] = {}
    for name, detail in _entitled_names(tuple(allowed)):
        if detail is None:
            fields[name] = str(getattr(state, name))
        elif detail in state.details:
            fields[name] = state.details[detail]
    return fields


@cache
def _entitled_names(allowed: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    """An agency's entitled names, sorted, each an attribute (None) or a catalogue detail (its field):
    worked out once per agency, not per view change. Names that are neither are never shown."""
    names: list[tuple[str, str | None]] = [(name, None) for name in allowed if name in ATTRIBUTE_FIELDS]
    names += [(name, name.removeprefix("details.")) for name in allowed if name.startswith("details.")]
    return tuple(sorted(names))


def holds(state: ListingState | None, agency: str, policy: Policy) -> bool:
    """`project(state, agency, policy) is not None`, without building the row (replays ask it per event)."""
    return state is not None and state.status in LIVE and bool(policy.enforced_by(agency, state.measures))


def project(state: ListingState | None, agency: str, policy: Policy) -> ViewRow | None:
    """The row `agency`'s copy must hold for this listing, or None if it may hold nothing."""
    held = _row_of(state, agency, policy)
    return None if held is None else ViewRow(**held)


def _row_of(state: ListingState | None, agency: str, policy: Policy) -> dict[str, Any] | None:
    """What `project` makes a `ViewRow` of, as its fields: an upsert is built from them directly
    (`view_change`), validated once as the `ViewChanged` it is, not first as a row."""
    if state is None or state.status not in LIVE:
        return None
    measures = policy.enforced_by(agency, state.measures)
    if not measures:
        return None
    allowed = policy.agency_by_id[agency].fields
    return {
        "listing_id": state.envelope.listing_id,
        "version": state.envelope.version,
        "status": state.status,
        "subject_ref": state.subject_ref,
        "measures": measures,
        "fields": entitled_fields(state, allowed),
        "effective_from": state.effective_from,
        "expires_at": state.expires_at,
        "exemptions": [e for e in state.exemptions if e.measure in measures],
    }


def view_event_id(listing_id: str, version: int, agency: str) -> str:
    """Deterministic: re-processing a listing event re-emits the very same view change.

    `uuid.uuid5(VIEW_NAMESPACE, f"{listing_id}:{version}:{agency}")`, written out (SHA-1 of the
    namespace and the name, version 5 and RFC 4122 variant bits set) to spare two UUID objects
    per view change; the ids are part of the contract and never change."""
    name = f"{listing_id}:{version}:{agency}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _delete_reason(after: ListingState, agency: str) -> str:
    if after.status not in LIVE:
        return after.end_reason or after.status
    return f"{agency} no longer enforces any measure of this listing"


def view_change(
    before: ListingState | None, after: ListingState, agency: str, policy: Policy, at: datetime
) -> ViewChanged | None:
    """The change `agency` must receive when a listing goes from `before` to `after`, if any: an
    upsert is `upsert_change(project(after, ...))`, built without the intermediate row."""
    row = _row_of(after, agency, policy)
    if row is None and not holds(before, agency, policy):
        return None
    env = Envelope(
        event_id=view_event_id(after.envelope.listing_id, after.envelope.version, agency),
        listing_id=after.envelope.listing_id,
        version=after.envelope.version,
        agency="ledger",
        occurred_at=after.envelope.occurred_at,
        recorded_at=at,
    )
    if row is None:
        return delete_change(after, env, agency, reason=_delete_reason(after, agency))
    del row["listing_id"], row["version"]  # the envelope's
    reason = type_of_change(before, after)
    return ViewChanged(envelope=env, view_agency=agency, op="upsert", reason=reason, **row)


def upsert_change(row: ViewRow, env: Envelope, agency: str, reason: str) -> ViewChanged:
    """The upsert that makes a copy hold `row` (used by the ledger and by reconciler repairs)."""
    return ViewChanged(
        envelope=env,
        view_agency=agency,
        op="upsert",
        status=row.status,
        subject_ref=row.subject_ref,
        measures=row.measures,
        fields=row.fields,
        effective_from=row.effective_from,
        expires_at=row.expires_at,
        exemptions=row.exemptions,
        reason=reason,
    )


def delete_change(state: ListingState | None, env: Envelope, agency: str, reason: str) -> ViewChanged:
    """The delete that makes a copy hold no row of the listing (used by the ledger and by repairs).

    Its status says why: the listing's own when it ended, `withdrawn` when it lives on but the
    agency lost entitlement (or the ledger never had it: `state` None, dated at the envelope)."""
    return ViewChanged(
        envelope=env,
        view_agency=agency,
        op="delete",
        status=state.status if state is not None and state.status not in LIVE else WITHDRAWN,
        subject_ref=state.subject_ref if state is not None else "",
        measures=[],
        fields={},
        effective_from=state.effective_from if state is not None else env.recorded_at,
        expires_at=state.expires_at if state is not None else env.recorded_at,
        exemptions=[],
        reason=reason,
    )


def type_of_change(before: ListingState | None, after: ListingState) -> str:
    if before is None:
        return "issued"
    return f"version {after.envelope.version}"


def views_of(state: ListingState, policy: Policy) -> dict[str, ViewRow]:
    """Every agency's row for this listing."""
    rows = {agency: project(state, agency, policy) for agency in policy.enforcers}
    return {agency: row for agency, row in rows.items() if row is not None}
