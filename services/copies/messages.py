"""What a copy sink publishes: pure functions over the contract.

Acknowledgement ids depend only on the copy and the input position, so a message
re-sent after a crash is recognisably the same message. (What a copy refuses to apply
is recorded by `core.rejections.rejected`, with the same property.)
"""

from __future__ import annotations

import uuid
from datetime import datetime

from services.core.digest import Digest
from services.core.events import CopyApplied, CopyDigest, Envelope, Event, ViewChanged
from services.core.policy import Policy
from services.core.views import ViewRow

COPY_NAMESPACE = uuid.UUID("a5d3b0c2-41e8-4c0a-9a1f-5e7b3c2d9f10")


def _id(*parts: object) -> str:
    return str(uuid.uuid5(COPY_NAMESPACE, ":".join(str(p) for p in parts)))


def _envelope(event_id: str, agency: str, at: datetime, listing_id: str = "", version: int = 0) -> Envelope:
    """What the copy writes is its own report, decided and recorded at the same moment."""
    return Envelope(event_id=event_id, listing_id=listing_id, version=version, agency=agency,
                    occurred_at=at, recorded_at=at)  # fmt: skip


def applied(change: ViewChanged, partition: int, offset: int, agency: str, at: datetime) -> CopyApplied:
    """The acknowledgement that `agency`'s copy applied `change` (read at partition/offset)."""
    row = ViewRow.from_change(change) if change.op == "upsert" else None
    return holding(change.envelope.listing_id, change.envelope.version, row, partition, offset, agency, at)


def holding(
    listing_id: str,
    version: int,
    row: ViewRow | None,
    partition: int,
    offset: int,
    agency: str,
    at: datetime,
    row_hash: str = "",
) -> CopyApplied:
    """The acknowledgement that, at partition/offset, `agency`'s copy holds `row` at `version` (or, with
    no row, its deletion). It also answers a repair the ledger has overtaken: with what the copy holds.
    `row_hash`, when given, is `row.row_hash()` already computed."""
    return CopyApplied(
        envelope=_envelope(_id("applied", agency, partition, offset), agency, at, listing_id, version),
        copy_agency=agency,
        op="upsert" if row is not None else "delete",
        partition=partition,
        offset=offset,
        row_hash=(row_hash or row.row_hash()) if row is not None else "",
        applied_at=at,
    )


def digest_of(agency: str, digest: Digest, positions: dict[int, int], at: datetime) -> CopyDigest:
    """The copy's digest, with the positions it reflects: the reconciler compares like with like."""
    root = digest.root()
    return CopyDigest(
        envelope=_envelope(_id("digest", agency, root, sorted(positions.items())), agency, at),
        copy_agency=agency,
        rows=digest.rows,
        root=root,
        buckets=digest.hex_buckets(),
        positions={str(p): o for p, o in sorted(positions.items())},
        taken_at=at,
    )


def fault(event: Event, agency: str, policy: Policy) -> tuple[str, str] | None:
    """Why `event` may not enter `agency`'s copy, if it may not: (code, sentence).

    The ledger sends only entitled fields; checking again here means no bug upstream and
    no hand-written message can put a field the agency may not see into its database.
    """
    if not isinstance(event, ViewChanged):
        return "not_a_view_change", f"{type(event).__name__} on a view topic"
    if event.view_agency != agency:
        return "wrong_agency", f"a change for {event.view_agency} on the view topic of {agency}"
    allowed = set(policy.agency_by_id[agency].fields) if agency in policy.agency_by_id else set()
    extra = sorted(set(event.fields) - allowed)
    foreign = [m for m in event.measures if m not in policy.enforced_by(agency, event.measures)]
    if extra or foreign:
        return "not_entitled", f"{agency} is not entitled to fields {extra} or measures {foreign}"
    return None
