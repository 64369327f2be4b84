"""The lines of a timeline: each decision, each copy's acknowledgement or its absence, each finding.

Built from what `timeline.gather` found; every line is a row with the same keys,
so the terminal, JSON and CSV all tell the same story.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.audit.fold import Change, LedgerReplica
from services.audit.output import Row
from services.audit.replay import Replayed, Undecodable
from services.audit.story import describe, label, lag
from services.core.events import CopyApplied, Finding, Rejected
from services.core.position import Position


@dataclass
class Gathered:
    """What the log holds about some listings."""

    replica: LedgerReplica
    changes: list[Change] = field(default_factory=list)
    acks: list[CopyApplied] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    undecodable: list[Undecodable] = field(default_factory=list)
    refused: set[Position] = field(default_factory=set)  # where the ledger refused events (`rejected`)
    withheld: dict[Position, Replayed] = field(default_factory=dict)  # the events found there


def entry(
    when: datetime, listing: str, version: int, agency: str, event: str, detail: str, **extra: object
) -> Row:
    """One line of the story."""
    row: Row = {"time": when, "listing": listing, "version": version, "agency": agency}
    return {**row, "event": event, "detail": detail, **extra}


def change_rows(changes: list[Change]) -> list[Row]:
    rows = []
    for c in changes:
        env = c.after.envelope
        rows.append(
            entry(
                env.recorded_at,
                env.listing_id,
                env.version,
                env.agency,
                label(c.item.event),
                describe(c.item.event),
                decided=env.occurred_at,
                basis=c.after.legal_basis,
                position=str(c.item.position),
            )
        )
    return rows


def recorded_times(changes: list[Change]) -> dict[tuple[str, int], datetime]:
    return {
        (c.after.envelope.listing_id, c.after.envelope.version): c.after.envelope.recorded_at for c in changes
    }


def ack_rows(found: Gathered) -> list[Row]:
    """Each acknowledgement, with its delay after the backbone recorded the change."""
    recorded = recorded_times(found.changes)
    rows = []
    for ack in found.acks:
        env = ack.envelope
        since = recorded.get((env.listing_id, env.version))
        delay = ack.applied_at - since if since is not None else None
        detail = f"{ack.op} ({lag(delay)})" if delay is not None else ack.op
        rows.append(
            entry(
                ack.applied_at,
                env.listing_id,
                env.version,
                ack.copy_agency,
                f"applied v{env.version}",
                detail,
                lag_s=None if delay is None else round(delay.total_seconds(), 3),
                position=f"views.{ack.copy_agency}[{ack.partition}]@{ack.offset}",
            )
        )
    return rows


def expected_acks(changes: list[Change]) -> dict[tuple[str, str], list[Change]]:
    """For each (agency, listing): the steps that changed that agency's view, in order."""
    out: dict[tuple[str, str], list[Change]] = {}
    for c in changes:
        for agency in c.views:
            out.setdefault((agency, c.after.envelope.listing_id), []).append(c)
    return out


def applied_versions(acks: list[CopyApplied]) -> dict[tuple[str, str], int]:
    """The newest version each agency's copy acknowledged, per listing."""
    newest: dict[tuple[str, str], int] = {}
    for ack in acks:
        key = (ack.copy_agency, ack.envelope.listing_id)
        newest[key] = max(newest.get(key, 0), ack.envelope.version)
    return newest


def missing_rows(found: Gathered) -> list[Row]:
    """View changes no acknowledgement covers (a later version applied covers an earlier one)."""
    applied = applied_versions(found.acks)
    rows = []
    for (agency, listing), steps in expected_acks(found.changes).items():
        for c in steps:
            env = c.after.envelope
            if applied.get((agency, listing), 0) < env.version:
                detail = f"no acknowledgement of the {c.views[agency]} from the {agency} copy"
                rows.append(
                    entry(
                        env.recorded_at, listing, env.version, agency, f"NOT APPLIED v{env.version}", detail
                    )
                )
    return rows


def finding_rows(findings: list[Finding]) -> list[Row]:
    rows = []
    for f in findings:
        copy = "no row" if f.copy_version is None else f"v{f.copy_version}"
        since = f", since {f.since:%Y-%m-%d %H:%M:%S}" if f.since is not None else ""
        detail = f"{f.detail} (copy {copy}, expected v{f.expected_version}{since})"
        rows.append(
            entry(
                f.detected_at,
                f.envelope.listing_id,
                f.expected_version,
                f.copy_agency,
                f"finding: {f.kind}",
                detail,
            )
        )
    return rows


def rejected_rows(found: Gathered) -> list[Row]:
    """Refusals: the ledger's (from `rejected`), and those its order rules imply (from the replay)."""
    rows = [_refusal(r, found.withheld.get(_source(r))) for r in found.rejected]
    for item, decision in found.replica.refused:
        env = item.event.envelope
        what, why = f"REFUSED {label(item.event)}", f"{decision.code}: {decision.reason}"
        rows.append(
            entry(
                env.recorded_at,
                env.listing_id,
                env.version,
                env.agency,
                what,
                why,
                position=str(item.position),
            )
        )
    return rows


def _source(rejected: Rejected) -> Position:
    return Position(rejected.source_topic, rejected.partition, rejected.offset)


def _refusal(rejected: Rejected, item: Replayed | None) -> Row:
    """A refusal, told with the refused event's own agency and kind when the log still holds it."""
    position = str(_source(rejected))
    detail = f"{rejected.reason_code}: {rejected.reason} (refused by {rejected.envelope.agency})"
    env = item.event.envelope if item is not None else rejected.envelope
    what = f"REFUSED {label(item.event)}" if item is not None else "REFUSED"
    return entry(env.recorded_at, env.listing_id, env.version, env.agency, what, detail, position=position)


def copy_rows(found: Gathered) -> list[Row]:
    """Per agency and listing: the view version it should hold now, and the one it acknowledged."""
    applied = applied_versions(found.acks)
    rows = []
    for (agency, listing), steps in sorted(expected_acks(found.changes).items()):
        last = steps[-1].after.envelope
        have = applied.get((agency, listing))
        behind = (have or 0) < last.version
        rows.append(
            {
                "agency": agency,
                "listing": listing,
                "expected": f"v{last.version} {steps[-1].views[agency]}",
                "applied": f"v{have}" if have else "never",
                "state": "BEHIND" if behind else "in step",
                "since": last.recorded_at if behind else None,
            }
        )
    return rows


ORDER = {"change": 0, "ack": 1, "missing": 2, "finding": 3, "refused": 4}


def story_rows(found: Gathered) -> list[Row]:
    """Every line, ordered by time; at equal times the decision comes before its consequences."""
    parts = {
        "change": change_rows(found.changes),
        "ack": ack_rows(found),
        "missing": missing_rows(found),
        "finding": finding_rows(found.findings),
        "refused": rejected_rows(found),
    }
    tagged = [(row["time"], ORDER[kind], row) for kind, rows in parts.items() for row in rows]
    return [row for _, _, row in sorted(tagged, key=lambda t: (t[0], t[1], t[2]["version"]))]
