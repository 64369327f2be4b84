"""A reference model of what the ledger and every agency's view must say, for the scenario tests' oracle.

Written from the rules as docs/architecture.md (§3, §6, §8) states them, not from
`services/core/listing.evolve` or `services/core/views.project`, and sharing no code with
them: a bug in the fold or the projection then disagrees with this model and fails a
scenario. It is deliberately small and table-driven:

- which version wins: a listing's events count in version order, each version once (the
  first event published for it), from version 1 with no gap; nothing counts after the
  listing has ended (revoked or expired); the same event twice counts once;
- what each kind of event does (`EFFECTS`);
- who sees what (`row`): an agency sees a live listing (active or disputed) only if it
  enforces one of its measures, then only those measures, the exemptions of those
  measures, and the fields the policy entitles it to; display fields arrive masked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from services.core.events import (
    Event,
    Exemption,
    ExemptionGranted,
    ListingCorrected,
    ListingExpired,
    ListingIssued,
    ListingRevoked,
    ListingState,
    ObjectionFiled,
    ObjectionResolved,
)
from services.core.policy import Policy
from services.core.views import ViewRow

ATTRIBUTES = ("display_name", "display_id", "subject_kind", "category", "legal_basis", "severity", "case_ref")
CORRECTABLE = ("measures", "legal_basis", "severity", "display_name", "details", "expires_at")
MASKED = {
    "display_name": re.compile(r"^(\S\**)( \S\**)*$"),  # the first character of each word
    "display_id": re.compile(r"^[0-9A-Z]{0,3}\*+[0-9A-Z]{0,2}$"),  # at most three first and two last
}


@dataclass
class Truth:
    """One listing as the rules say it is after the events that count."""

    listing_id: str
    version: int
    issuer: str
    subject_ref: str
    attributes: dict[str, str]
    details: dict[str, str]
    measures: list[str]
    effective_from: datetime
    expires_at: datetime
    ended: str = ""  # "revoked" or "expired" once it ends
    exemptions: list[Exemption] = field(default_factory=list)
    open_objections: set[str] = field(default_factory=set)
    event_ids: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """Ended beats disputed, disputed (an objection still open) beats active."""
        return self.ended or ("disputed" if self.open_objections else "active")


def _issued(e: ListingIssued) -> Truth:
    attributes = {name: str(getattr(e, name)) for name in ATTRIBUTES}
    return Truth(e.envelope.listing_id, 0, e.envelope.agency, e.subject_ref, attributes, dict(e.details),
                 list(e.measures), e.effective_from, e.expires_at)  # fmt: skip


def _corrected(t: Truth, e: ListingCorrected) -> None:
    """A correction replaces what it names and leaves the rest."""
    for name in CORRECTABLE:
        value = getattr(e, name)
        if value is None:
            continue
        if name in ATTRIBUTES:
            t.attributes[name] = str(value)
        else:
            setattr(t, name, value.copy() if isinstance(value, list | dict) else value)


def _objection_resolved(t: Truth, e: ObjectionResolved) -> None:
    t.open_objections.discard(e.objection_id)


EFFECTS: dict[type[Event], Callable[[Truth, Event], None]] = {
    ListingCorrected: _corrected,  # type: ignore[dict-item]
    ListingRevoked: lambda t, e: setattr(t, "ended", "revoked"),
    ListingExpired: lambda t, e: setattr(t, "ended", "expired"),
    ExemptionGranted: lambda t, e: t.exemptions.append(e.exemption),  # type: ignore[attr-defined]
    ObjectionFiled: lambda t, e: t.open_objections.add(e.objection_id),  # type: ignore[attr-defined]
    ObjectionResolved: _objection_resolved,  # type: ignore[dict-item]
}


def truths(events: Iterable[Event], expired: Iterable[str] = ()) -> dict[str, Truth]:
    """Every listing's truth from the events published, in whatever order they were published;
    the listings in `expired` were then expired by the backbone (one more version)."""
    out = {lid: t for lid, chain in _chains(events).items() if (t := _life(chain)) is not None}
    for listing_id in expired:
        truth = out[listing_id]
        if not truth.ended:
            truth.ended, truth.version = "expired", truth.version + 1
    return out


def history(events: Iterable[Event]) -> dict[tuple[str, int], Truth]:
    """The truth after each version of each listing: what the ledger's compacted topic says at it."""
    out = {}
    for listing_id, chain in _chains(events).items():
        for version in sorted(chain):
            truth = _life({v: e for v, e in chain.items() if v <= version})
            if truth is not None and truth.version == version:
                out[(listing_id, version)] = truth
    return out


def _chains(events: Iterable[Event]) -> dict[str, dict[int, Event]]:
    """Each listing's events by version; the first published for a version is the one that counts."""
    chains: dict[str, dict[int, Event]] = {}
    for e in events:
        chains.setdefault(e.envelope.listing_id, {}).setdefault(e.envelope.version, e)
    return chains


def _life(chain: dict[int, Event]) -> Truth | None:
    first = chain.get(1)
    if not isinstance(first, ListingIssued):
        return None
    truth, version = _issued(first), 1
    while (e := chain.get(version)) is not None and (version == 1 or not truth.ended):
        if version > 1:
            EFFECTS[type(e)](truth, e)
        truth.version, truth.event_ids = version, [*truth.event_ids, e.envelope.event_id]
        version += 1
    return truth


def row(truth: Truth, agency: str, policy: Policy) -> ViewRow | None:
    """What `agency`'s copy must hold for the listing, or None when it may hold nothing."""
    if truth.ended:
        return None
    enforced = {m.code for m in policy.measures if agency in m.enforced_by}
    measures = [m for m in truth.measures if m in enforced]
    if not measures:
        return None
    entitled = set(next(a for a in policy.agencies if a.id == agency).fields)
    details = {f"details.{k}": v for k, v in truth.details.items()}
    everything = {**truth.attributes, "issuer": truth.issuer, **details}
    fields = {name: value for name, value in sorted(everything.items()) if name in entitled}
    return ViewRow(listing_id=truth.listing_id, version=truth.version, status=truth.status,  # type: ignore[arg-type]
                   subject_ref=truth.subject_ref, measures=measures, fields=fields,
                   effective_from=truth.effective_from, expires_at=truth.expires_at,
                   exemptions=[x for x in truth.exemptions if x.measure in measures])  # fmt: skip


def views(truth_of: dict[str, Truth], agency: str, policy: Policy) -> dict[str, ViewRow]:
    """Every row `agency`'s copy must hold, by listing id."""
    rows = {lid: row(t, agency, policy) for lid, t in truth_of.items()}
    return {lid: r for lid, r in rows.items() if r is not None}


def unmasked(rows: Iterable[ViewRow]) -> list[tuple[str, str]]:
    """(listing, field) of every display field a row shows unmasked."""
    return [(r.listing_id, name) for r in rows for name, pattern in MASKED.items()
            if name in r.fields and not pattern.match(r.fields[name])]  # fmt: skip


def disagreements(truth: Truth, state: ListingState) -> list[str]:
    """What the ledger's state of a listing says otherwise than the rules (empty: it agrees)."""
    said = {
        "version": state.envelope.version, "status": state.status, "issuer": state.issuer,
        "subject_ref": state.subject_ref, "measures": state.measures, "details": state.details,
        "attributes": {name: str(getattr(state, name)) for name in ATTRIBUTES},
        "effective_from": state.effective_from, "expires_at": state.expires_at,
        "exemptions": state.exemptions, "event_ids": state.event_ids,
        "open_objections": {o.objection_id for o in state.objections if o.outcome is None},
    }  # fmt: skip
    return [name for name, value in said.items() if getattr(truth, name) != value]
