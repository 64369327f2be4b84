"""The front-line check: is this subject under a measure this agency enforces, and can the copy be trusted?

An answer always carries the copy's freshness (positions, lag per partition, time of the
last applied change). A copy that is behind and has applied nothing for longer than the
SLA, or whose lag cannot be measured, says so and sends the officer to the issuing
agency: it never answers silently from a stale copy (docs/architecture.md §5, the Yu case).
Nor from a damaged one: a row that no longer reads as a view row (edited by hand,
corrupted), or a copy that cannot be read at all, makes the answer say the copy is
damaged and send the officer to the issuing agency; the damaged rows are recorded in
the copy for the reconciler to report as a finding and repair.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime

from pydantic import BaseModel

from services.core.copystore import CopyStore, Damaged, StoreError
from services.core.events import Exemption
from services.core.views import ViewRow


class MeasureAnswer(BaseModel):
    measure: str
    in_force: bool
    why: str
    exemption: Exemption | None = None


class ListingAnswer(BaseModel):
    listing_id: str
    version: int
    status: str
    issuer: str | None
    legal_basis: str | None
    case_ref: str | None
    effective_from: datetime
    expires_at: datetime
    measures: list[MeasureAnswer]


class Freshness(BaseModel):
    positions: dict[int, int]
    lag: dict[int, int] | None
    last_applied_at: datetime | None
    stale: bool
    note: str


class DamagedRow(BaseModel):
    listing_id: str
    reason: str


class CheckAnswer(BaseModel):
    agency: str
    subject_ref: str
    checked_at: datetime
    restricted: bool
    listings: list[ListingAnswer]
    freshness: Freshness
    advice: str
    damaged: list[DamagedRow] = []

    @property
    def trustworthy(self) -> bool:
        """False when the officer must confirm with the issuing agency before acting."""
        return not (self.freshness.stale or self.damaged)


def freshness(
    positions: dict[int, int], lag: dict[int, int] | None, last: datetime | None, now: datetime, sla_s: float
) -> Freshness:
    """Stale: lag unknown, or changes waiting while nothing was applied for longer than the SLA."""

    def made(stale: bool, note: str) -> Freshness:
        return Freshness(positions=positions, lag=lag, last_applied_at=last, stale=stale, note=note)

    if lag is None:
        return made(True, "the broker could not be reached, so the copy's lag is unknown")
    behind = sum(lag.values())
    if behind == 0:
        return made(False, "up to date: every change in the view topic is applied")
    idle = (now - last).total_seconds() if last else None
    if idle is None or idle > sla_s:
        since = "never applied a change" if idle is None else f"applied nothing for {idle:.0f} s"
        return made(True, f"{behind} changes waiting and the copy {since} (SLA {sla_s:.0f} s)")
    return made(False, f"{behind} changes waiting, last applied {idle:.0f} s ago (within the SLA)")


def measure_answer(row: ViewRow, measure: str, now: datetime) -> MeasureAnswer:
    """Whether one measure binds the subject now: in effect, not expired, not exempted."""
    exemption = next((e for e in row.exemptions if e.covers(measure, now)), None)
    in_force = False
    if now < row.effective_from:
        why = f"takes effect {row.effective_from:%Y-%m-%d %H:%M}"
    elif now >= row.expires_at:
        why = f"expired {row.expires_at:%Y-%m-%d %H:%M}"
    elif exemption is not None:
        why = f"exempt until {exemption.ends_at:%Y-%m-%d %H:%M}: {exemption.reason}"
    else:
        in_force = True
        why = "in force, but disputed: an objection is open" if row.status == "disputed" else "in force"
    return MeasureAnswer(measure=measure, in_force=in_force, why=why, exemption=exemption)


def listing_answer(row: ViewRow, now: datetime) -> ListingAnswer:
    return ListingAnswer(
        listing_id=row.listing_id,
        version=row.version,
        status=row.status,
        issuer=row.fields.get("issuer"),
        legal_basis=row.fields.get("legal_basis"),
        case_ref=row.fields.get("case_ref"),
        effective_from=row.effective_from,
        expires_at=row.expires_at,
        measures=[measure_answer(row, m, now) for m in row.measures],
    )


def answer(
    store: CopyStore,
    subject_ref: str,
    lag: dict[int, int] | None,
    now: datetime,
    sla_s: float,
    positions: dict[int, int] | None = None,
) -> CheckAnswer:
    """`positions`: those `lag` was measured against (read from the store when not given)."""
    try:
        rows, damaged = store.rows_for_subject(subject_ref)
        at = store.positions() if positions is None else positions
        fresh = freshness(at, lag, store.last_applied_at(), now, sla_s)
    except StoreError as e:  # the copy cannot be read at all: still an answer, never a traceback
        return unreadable(store.agency, subject_ref, now, str(e))
    if damaged:
        _record(store, damaged, now)
    listings = [listing_answer(row, now) for row in rows]
    restricted = any(m.in_force for listing in listings for m in listing.measures)
    found = [DamagedRow(listing_id=d.listing_id, reason=d.reason) for d in damaged]
    return CheckAnswer(
        agency=store.agency,
        subject_ref=subject_ref,
        checked_at=now,
        restricted=restricted,
        listings=listings,
        freshness=fresh,
        advice=advice(restricted, listings, fresh, found),
        damaged=found,
    )


def _record(store: CopyStore, damaged: list[Damaged], now: datetime) -> None:
    """Leave the damage where the reconciler looks; a copy too broken to record it is found anyway."""
    with suppress(StoreError):
        store.record_damage(damaged, now)


def unreadable(agency: str, subject_ref: str, now: datetime, reason: str) -> CheckAnswer:
    note = "the copy could not be read"
    fresh = Freshness(positions={}, lag=None, last_applied_at=None, stale=True, note=note)
    damaged = [DamagedRow(listing_id="", reason=reason)]
    return CheckAnswer(agency=agency, subject_ref=subject_ref, checked_at=now, restricted=False,
                       listings=[], freshness=fresh, advice=advice(False, [], fresh, damaged),
                       damaged=damaged)  # fmt: skip


def advice(
    restricted: bool, listings: list[ListingAnswer], fresh: Freshness, damaged: list[DamagedRow]
) -> str:
    issuers = sorted({x.issuer or "the issuing agency" for x in listings}) or ["the issuing agency"]
    if damaged:
        which = ", ".join(d.listing_id for d in damaged if d.listing_id) or "the copy itself"
        return (
            f"COPY DAMAGED, CONFIRM WITH THE ISSUING AGENCY: this copy cannot be read for {which}. "
            f"Confirm the subject's status with {', '.join(issuers)} before applying or lifting any measure; "
            "the damage is reported to the reconciler."
        )
    if fresh.stale:
        return (
            f"CONFIRM BEFORE ACTING: this copy may be out of date ({fresh.note}). "
            f"Confirm the subject's status with {', '.join(issuers)} before applying or lifting any measure."
        )
    if restricted:
        return "RESTRICTED: apply the measures marked in force; the listing's legal basis is given."
    return "NOT RESTRICTED: no measure this agency enforces applies to the subject now."
