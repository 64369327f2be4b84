"""The one builder of `Rejected` records: who refused the message at which position, and why.

Ledger, copies and reconciler all refuse what they cannot take into `rejected` and go
on. The record's id depends only on who refused and where the message sits
(`uuid5(REJECTION_NAMESPACE, "<refuser>:<topic>:<partition>:<offset>")`), so re-reading
the same position after a crash yields the same record, while two services refusing
the same message (a copy and the reconciler both read a view topic) are told apart.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from services.core.events import Envelope, Rejected
from services.core.position import Position

REJECTION_NAMESPACE = uuid.UUID("0b6c0f7e-5a43-4f4f-8d0e-7f2d7f3c9a61")


def rejection_id(refuser: str, where: Position) -> str:
    """Deterministic: the same refuser and position always give the same id."""
    return str(uuid.uuid5(REJECTION_NAMESPACE, f"{refuser}:{where.topic}:{where.partition}:{where.offset}"))


def rejected(
    refuser: str,
    where: Position,
    code: str,
    reason: str,
    payload: bytes | None,
    at: datetime,
    listing_id: str = "",
    version: int = 0,
) -> Rejected:
    """`refuser`'s record that it would not take the message at `where` (its raw `payload`)."""
    envelope = Envelope(
        event_id=rejection_id(refuser, where),
        listing_id=listing_id,
        version=version,
        agency=refuser,
        occurred_at=at,
        recorded_at=at,
    )
    return Rejected(
        envelope=envelope,
        source_topic=where.topic,
        partition=where.partition,
        offset=where.offset,
        reason_code=code,
        reason=reason,
        payload=payload or b"",
    )
