"""A small world for the reconciler's unit tests: listings folded from sealed events, their view
changes, and an in-memory copy that answers the `CopyProbe` port like a real one would."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from services.core.copystore.probe import Damage, Leaf, split_hashes
from services.core.digest import Digest, bucket_of
from services.core.events import CopyApplied, CopyDigest, Envelope, Finding, ListingState, ViewChanged
from services.core.listing import evolve
from services.core.policy import Policy
from services.core.views import ViewRow, view_change
from services.reconciler.acks import Sla
from services.reconciler.engine import Reconciler, Timing
from tests.support.factory import T0, Ledgerbook, policy_with_keys

SLA = Sla(listing=timedelta(seconds=60), revocation=timedelta(seconds=10))
TIMING = Timing(SLA, repair_sla=timedelta(seconds=30))
AGENCIES = ("civil-aviation", "railway")


@dataclass
class MemoryCopy:
    """An agency's copy held in a dict: applies view changes and answers probe questions."""

    agency: str
    rows: dict[str, ViewRow] = field(default_factory=dict)
    next_offset: int = 0
    size: int = 256
    misfiled: set[str] = field(default_factory=set)  # rows stored under another bucket (by hand)
    damage: dict[str, Damage] = field(default_factory=dict)  # rows a front-line check could not read

    def apply(self, change: ViewChanged) -> CopyApplied:
        if change.op == "upsert":
            self.rows[change.envelope.listing_id] = ViewRow.from_change(change)
        else:
            self.rows.pop(change.envelope.listing_id, None)
        self.next_offset += 1
        return applied(change, self.next_offset - 1, T0)

    def digest(self) -> list[str]:
        return Digest.of(
            ((lid, Leaf.of(r).value(lid)) for lid, r in self.rows.items()), self.size
        ).hex_buckets()

    def leaves(self, bucket: int, size: int) -> dict[str, Leaf]:
        return {lid: Leaf.of(r) for lid, r in self.rows.items()
                if bucket_of(lid, size) == bucket and lid not in self.misfiled}  # fmt: skip

    def sub_digest(self, bucket: int, size: int, fanout: int) -> list[str]:
        values = {lid: leaf.value(lid) for lid, leaf in self.leaves(bucket, size).items()}
        return split_hashes(values, bucket, size, fanout)

    def positions(self) -> dict[int, int]:
        return {0: self.next_offset}

    def misplaced(self) -> dict[str, Leaf]:
        return {lid: Leaf.of(self.rows[lid]) for lid in self.misfiled if lid in self.rows}

    def damaged(self) -> dict[str, Damage]:
        return dict(self.damage)


def applied(change: ViewChanged, offset: int, at: datetime, partition: int = 0) -> CopyApplied:
    env = Envelope(event_id=f"ack-{offset}", listing_id=change.envelope.listing_id,
                   version=change.envelope.version, agency=change.view_agency,
                   occurred_at=at, recorded_at=at)  # fmt: skip
    return CopyApplied(envelope=env, copy_agency=change.view_agency, op=change.op, partition=partition,
                       offset=offset, row_hash="", applied_at=at)  # fmt: skip


@dataclass
class World:
    """Listings, the reconciler fed with their states and view changes, and one memory copy per agency."""

    policy: Policy
    book: Ledgerbook
    engine: Reconciler
    copies: dict[str, MemoryCopy]
    states: dict[str, ListingState] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    emitted: dict[str, list[tuple[ViewChanged, datetime]]] = field(default_factory=dict)
    acks: list[CopyApplied] = field(default_factory=list)

    @classmethod
    def make(cls, folder: Path) -> World:
        policy, keystore = policy_with_keys(folder)
        engine = Reconciler(policy, AGENCIES, TIMING)
        return cls(policy, Ledgerbook(keystore), engine, {a: MemoryCopy(a) for a in AGENCIES})

    @classmethod
    def make_like(cls, world: World) -> World:
        """A second reconciler over the same listings (a restart): fed the same states and view changes."""
        engine = Reconciler(world.policy, AGENCIES, TIMING)
        for state in world.states.values():
            engine.on_state(state, T0)
        for changes in world.emitted.values():
            for offset, (change, at) in enumerate(changes):
                engine.on_view(change, 0, offset, at)
        for ack in world.acks:
            engine.on_applied(ack)
        return cls(world.policy, world.book, engine, world.copies, world.states, world.offsets, world.emitted,
                   world.acks)  # fmt: skip

    def record(
        self, event: object, at: datetime, deliver: bool = True, ack: bool = True
    ) -> list[ViewChanged]:
        """Fold a listing event into the ledger, tell the reconciler, and (optionally) apply it to copies."""
        listing_id = event.envelope.listing_id  # type: ignore[attr-defined]
        before = self.states.get(listing_id)
        after = evolve(before, event)  # type: ignore[arg-type]
        self.states[listing_id] = after
        self.engine.on_state(after, at)
        changes = [c for a in AGENCIES if (c := view_change(before, after, a, self.policy, at))]
        for change in changes:
            self.emit(change, at, deliver, ack)
        return changes

    def emit(
        self, change: ViewChanged, at: datetime, deliver: bool = True, ack: bool = True
    ) -> list[Finding]:
        """Put a change on the agency's view topic; the copy applies it and acknowledges a second later."""
        agency = change.view_agency
        offset = self.offsets.get(agency, 0)
        self.offsets[agency] = offset + 1
        self.emitted.setdefault(agency, []).append((change, at))
        self.engine.on_view(change, 0, offset, at)
        if deliver:
            copy = self.copies[agency]
            copy.next_offset = offset
            ack_event = copy.apply(change)
            if ack:
                later = ack_event.model_copy(update={"applied_at": at + timedelta(seconds=1)})
                self.acks.append(later)
                return self.engine.on_applied(later).findings
        return []


__all__ = ["T0", "World", "applied", "copy_digest"]


def copy_digest(agency: str, buckets: list[str], positions: dict[int, int]) -> CopyDigest:
    env = Envelope(event_id="d-1", listing_id="", version=0, agency=agency, occurred_at=T0, recorded_at=T0)
    return CopyDigest(envelope=env, copy_agency=agency, rows=0, root="r", buckets=buckets,
                      positions={str(p): o for p, o in positions.items()}, taken_at=T0)  # fmt: skip
