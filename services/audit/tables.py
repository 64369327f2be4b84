"""The reports of `state-at` and `verify`: tables built from their results, ready for any format."""

from __future__ import annotations

from services.audit.output import Report, Row, Table
from services.audit.state_at import Behind, PastState
from services.audit.story import lag
from services.audit.verify import Verification

VIEW_COLUMNS = (
    "listing",
    "version",
    "status",
    "subject_ref",
    "measures",
    "effective_from",
    "expires_at",
    "exemptions",
    "fields",
    "row_hash",
)
VIEW_TEXT = ("listing", "version", "status", "subject_ref", "measures", "expires_at", "exemptions")
LEDGER_COLUMNS = (
    "listing",
    "version",
    "status",
    "issuer",
    "measures",
    "subject_ref",
    "recorded",
    "end_reason",
)
SUMMARY_COLUMNS = ("agency", "rows", "root")
STALE_COLUMNS = ("agency", "listing", "expected", "copy", "since", "behind", "behind_s")
BROKEN_COLUMNS = ("topic", "partition", "offset", "listing", "version", "agency", "code", "reason")


def view_table(past: PastState, agency: str) -> Table:
    rows = [
        {
            "listing": r.listing_id,
            "version": r.version,
            "status": r.status,
            "subject_ref": r.subject_ref,
            "measures": r.measures,
            "effective_from": r.effective_from,
            "expires_at": r.expires_at,
            "exemptions": [f"{e.measure} {e.starts_at:%Y-%m-%d}..{e.ends_at:%Y-%m-%d}" for e in r.exemptions],
            "fields": [f"{k}={v}" for k, v in sorted(r.fields.items())],
            "row_hash": r.row_hash(),
        }
        for r in past.view(agency)
    ]
    return Table(
        "view", f"{agency}'s expected view at {past.at:%Y-%m-%d %H:%M:%S}", VIEW_COLUMNS, rows, VIEW_TEXT
    )


def ledger_table(past: PastState) -> Table:
    rows = [
        {
            "listing": lid,
            "version": s.envelope.version,
            "status": s.status,
            "issuer": s.issuer,
            "measures": s.measures,
            "subject_ref": s.subject_ref,
            "recorded": s.envelope.recorded_at,
            "end_reason": s.end_reason,
        }
        for lid, s in sorted(past.states.items())
    ]
    return Table("ledger", f"The ledger at {past.at:%Y-%m-%d %H:%M:%S}", LEDGER_COLUMNS, rows)


def summary_table(past: PastState) -> Table:
    rows: list[Row] = []
    for agency in past.policy.enforcers:
        digest = past.digests[agency]
        rows.append({"agency": agency, "rows": digest.rows, "root": digest.root()})
    return Table("views", "Expected views (rows, digest root)", SUMMARY_COLUMNS, rows)


def stale_table(past: PastState, stale: list[Behind]) -> Table:
    rows = [
        {
            "agency": b.agency,
            "listing": b.listing,
            "expected": f"v{b.want.version} {b.want.op}",
            "copy": f"v{b.have}" if b.have else "nothing",
            "since": b.want.since,
            "behind": lag(past.at - b.want.since),
            "behind_s": round((past.at - b.want.since).total_seconds(), 3),
        }
        for b in stale
    ]
    title = f"Copies behind their view at {past.at:%Y-%m-%d %H:%M:%S} (by acknowledgements)"
    return Table("stale", title, STALE_COLUMNS, rows)


def state_notes(past: PastState) -> list[str]:
    statuses = ", ".join(f"{n:,} {status}" for status, n in sorted(past.statuses.items())) or "no listings"
    notes = [f"ledger at {past.at.isoformat()}: {statuses}; {past.later:,} later events left out"]
    if past.rejected:
        notes.append(f"{past.rejected} events skipped because the ledger refused them (topic rejected)")
    if past.misplaced:
        notes.append(f"{past.misplaced} events skipped: on a partition other than their listing's own")
    if past.refused:
        notes.append(f"{past.refused} events the ledger's order rules refuse were not applied")
    if past.held:
        notes.append(f"{len(past.held)} events wait for a version missing at T, e.g. at {past.held[0]}")
    notes += [f"undecodable: {bad.position}: {bad.reason}" for bad in past.undecodable]
    return notes


def verify_report(result: Verification, topics: list[str]) -> Report:
    rows = [
        {
            "topic": b.position.topic,
            "partition": b.position.partition,
            "offset": b.position.offset,
            "listing": b.listing,
            "version": b.version,
            "agency": b.agency,
            "code": b.code,
            "reason": b.reason,
        }
        for b in result.broken
    ]
    verdict = "every signature valid, every chain intact" if result.sound else f"{len(rows)} BROKEN"
    note = (
        f"verified {result.events:,} events of {result.listings:,} listings in {len(topics)} topics: "
        f"{verdict}"
    )
    suspicious = sum(b.code in ("replay", "wrong_partition") for b in result.broken)
    notes = [note] + (
        [f"{suspicious} of them replays or events on a wrong partition: refused by the ledger, suspicious"]
        if suspicious
        else []
    )
    return Report([Table("broken", "Broken events and links", BROKEN_COLUMNS, rows)], notes)
