"""Findings: what reconciliation tells an operator — which copy, which listing, what differs,
since when, and what was done.

Ids are derived from what was found, so the same finding emitted twice (a retry, a
restart that re-detects an unrepaired difference) carries the same id and a reader
can tell it is one finding, not two.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from services.core.copystore.probe import Damage
from services.core.events import CopyDigest, Envelope, Finding, Objection
from services.core.topics import RECONCILER
from services.reconciler.acks import Overdue, Settled
from services.reconciler.consistency import CHANGED, MISSED
from services.reconciler.model import SHOWN, Difference

FINDING_NAMESPACE = uuid.UUID("9a3c1d77-52e4-4b0f-8d26-7e1f4c5b9a08")

MISSING_ACK = "missing_ack"
STALE_COPY = "stale_copy"
REVOKED_STILL_ACTIVE = "revoked_still_active"
EXPIRED_STILL_ACTIVE = "expired_still_active"
REPAIRED = "repaired"
ESCALATED = "escalated"
ACKNOWLEDGED_LATE = "acknowledged_late"
OVERDUE_OBJECTION = "overdue_objection"
COPY_DAMAGED = "copy_damaged"
DIGEST_DRIFT = "digest_drift"
UNEXPLAINED_BUCKET = "unexplained_bucket"
RESOLVED = "resolved"

STALE_KINDS = frozenset({STALE_COPY, REVOKED_STILL_ACTIVE, EXPIRED_STILL_ACTIVE})
# Detections stay open until a closer derived from their id (`finding_id(closer, detection id)`) is logged.
DETECTIONS = frozenset({MISSING_ACK, STALE_COPY, REVOKED_STILL_ACTIVE, EXPIRED_STILL_ACTIVE, COPY_DAMAGED,
                        DIGEST_DRIFT, UNEXPLAINED_BUCKET})  # fmt: skip
CLOSERS = (ACKNOWLEDGED_LATE, REPAIRED, RESOLVED)
# How a detection's `since` was chosen; the words are part of its detail, and `family_of` reads them.
SINCE_DUE = "wrong since the change was due (missed change)"
SINCE_SHOWN = "wrong since the first digest that showed it (changed under the sink)"


def finding_id(*parts: object) -> str:
    return str(uuid.uuid5(FINDING_NAMESPACE, "|".join(str(p) for p in parts)))


def make(
    kind: str,
    fid: str,
    agency: str,
    listing_id: str,
    expected_version: int,
    detail: str,
    detected_at: datetime,
    copy_version: int | None = None,
    since: datetime | None = None,
) -> Finding:
    envelope = Envelope(
        event_id=fid,
        listing_id=listing_id,
        version=expected_version,
        agency=RECONCILER,
        occurred_at=detected_at,
        recorded_at=detected_at,
    )
    return Finding(
        envelope=envelope,
        finding_id=fid,
        kind=kind,
        copy_agency=agency,
        expected_version=expected_version,
        copy_version=copy_version,
        detail=detail,
        since=since,
        detected_at=detected_at,
    )


def missing_ack(overdue: Overdue, now: datetime) -> Finding:
    wanted, last = overdue.expectation, overdue.last_applied
    applied = f"v{last.version} ({last.op}) at {last.applied_at.isoformat()}" if last else "nothing"
    detail = (
        f"{wanted.op} v{wanted.version} emitted {wanted.emitted_at.isoformat()} not acknowledged; "
        f"overdue by {overdue.overdue_by.total_seconds():.1f} s; copy last applied {applied}"
    )
    fid = finding_id(MISSING_ACK, wanted.agency, wanted.listing_id, wanted.version)
    return make(
        MISSING_ACK, fid, wanted.agency, wanted.listing_id, wanted.version, detail, now,
        copy_version=last.version if last else None, since=wanted.emitted_at,
    )  # fmt: skip


def acknowledged_late(settled: Settled, applied_at: datetime) -> Finding:
    """Closes a `missing_ack` finding: the copy did apply the change, after its SLA."""
    detection = finding_id(MISSING_ACK, settled.agency, settled.listing_id, settled.version)
    detail = (
        f"v{settled.version} acknowledged {settled.seconds:.1f} s after it was emitted, past its SLA; "
        f"closes missing_ack finding {detection}"
    )
    fid = finding_id(ACKNOWLEDGED_LATE, detection)
    return make(
        ACKNOWLEDGED_LATE, fid, settled.agency, settled.listing_id, settled.version, detail, applied_at,
        copy_version=settled.version, since=settled.emitted_at,
    )  # fmt: skip


def stale(diff: Difference, now: datetime) -> Finding:
    """A content difference; a copy still holding a revoked or expired listing is the graver kind."""
    kind = STALE_COPY
    if diff.ended_as is not None and diff.actual is not None:
        kind = REVOKED_STILL_ACTIVE if diff.ended_as == "revoked" else EXPIRED_STILL_ACTIVE
    fid = finding_id(kind, diff.agency, diff.listing_id, diff.expected_version, diff.actual, diff.since)
    basis = SINCE_SHOWN if diff.basis == SHOWN else SINCE_DUE
    detail = f"{diff.describe()}; {basis}, {diff.since.isoformat()}"
    return make(
        kind, fid, diff.agency, diff.listing_id, diff.expected_version, detail, now,
        copy_version=diff.actual.version if diff.actual else None, since=diff.since,
    )  # fmt: skip


def family_of(detection: Finding) -> str:
    """Which time-to-consistency family the repair of `detection` belongs to (see consistency.py)."""
    return CHANGED if SINCE_SHOWN in detection.detail else MISSED


def repaired(detection: Finding, applied_at: datetime) -> Finding:
    took = (applied_at - (detection.since or detection.detected_at)).total_seconds()
    basis = SINCE_SHOWN if family_of(detection) == CHANGED else SINCE_DUE
    detail = f"repair applied: consistent {took:.1f} s after the copy went wrong ({detection.kind}; {basis})"
    return _follow_up(REPAIRED, detection, detail, applied_at)


def resolved(detection: Finding, at: datetime, how: str) -> Finding:
    """Closes a detection whose copy is now right, saying when and how that was established."""
    detail = f"resolved at {at.isoformat()}: {how}; closes {detection.kind} finding {detection.finding_id}"
    return _follow_up(RESOLVED, detection, detail, at)


def copy_damaged(agency: str, listing_id: str, damage: Damage, version: int, now: datetime) -> Finding:
    """A row a front-line check could not read: the officer was sent to the issuing agency."""
    detail = f"a front-line check could not read the copy's row ({damage.reason})"
    fid = finding_id(COPY_DAMAGED, agency, listing_id, damage.seen_at.isoformat())
    return make(COPY_DAMAGED, fid, agency, listing_id, version, detail, now, since=damage.seen_at)


def digest_drift(agency: str, buckets: list[int], published: CopyDigest, now: datetime) -> Finding:
    """The copy's running digest disagrees with its own rows (hand edits, a row never added removed)."""
    detail = (
        f"the copy's running digest (root {published.root[:12]}, {published.taken_at.isoformat()}) disagrees "
        f"with its rows in buckets {buckets}; the copy's rolling verification rebuilds them from its rows"
    )
    fid = finding_id(DIGEST_DRIFT, agency, published.root)
    return make(DIGEST_DRIFT, fid, agency, "", 0, detail, now, since=published.taken_at)


def unexplained(agency: str, buckets: list[int], root: str, now: datetime) -> Finding:
    detail = f"buckets {buckets} of the copy differ from the view but no listing explains them"
    fid = finding_id(UNEXPLAINED_BUCKET, agency, root, tuple(buckets))
    return make(UNEXPLAINED_BUCKET, fid, agency, "", 0, detail, now)


def escalated(detection: Finding, now: datetime) -> Finding:
    waited = (now - detection.detected_at).total_seconds()
    detail = f"repair unacknowledged {waited:.1f} s after detection, needs a person ({detection.detail})"
    return _follow_up(ESCALATED, detection, detail, now)


def _follow_up(kind: str, detection: Finding, detail: str, at: datetime) -> Finding:
    env = detection.envelope
    return make(
        kind, finding_id(kind, detection.finding_id), detection.copy_agency, env.listing_id,
        detection.expected_version, detail, at, copy_version=detection.copy_version, since=detection.since,
    )  # fmt: skip


def overdue_objection(
    listing_id: str, version: int, issuer: str, objection: Objection, now: datetime
) -> Finding:
    """An objection past its due date without an outcome; filed against the issuer that must answer."""
    late = (now - objection.due_at).total_seconds() / 86400
    due = objection.due_at.isoformat()
    detail = f"{objection.kind} {objection.objection_id} due {due}, unanswered {late:.1f} days later"
    fid = finding_id(OVERDUE_OBJECTION, listing_id, objection.objection_id)
    return make(OVERDUE_OBJECTION, fid, issuer, listing_id, version, detail, now, since=objection.due_at)
