"""`state-at T`: the ledger and every agency's expected view as they stood at T, and which copies lagged.

Replays every listing topic from offset 0, because a listing's state at T depends
on all of its events before T. Seeking with `offsets_for_times` could only shorten
the tail, and only where Kafka timestamps rise with offsets, which CreateTime set by
many producers does not promise; the fold instead filters on the events' own
recorded (or decision) times, which are the facts the audit is about.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Literal, NamedTuple

from services.audit.fold import Change, LedgerReplica, Op
from services.audit.parallel import Share, fan_out, shares
from services.audit.replay import Meter, Placements, Undecodable, decoded, gc_paused, messages
from services.core.connection import KafkaConnection
from services.core.digest import Digest, leaf
from services.core.events import CopyApplied
from services.core.kafka import partition_counts
from services.core.policy import Policy
from services.core.position import Position
from services.core.views import ViewRow, project

TimeAxis = Literal["recorded", "decided"]


class Expected(NamedTuple):
    """The last change an agency's view had to make for a listing, as of T (a tuple: one per view change)."""

    version: int
    op: Op
    since: datetime


@dataclass
class PastState:
    """The replayed ledger at `at`, with the view changes each agency should have acknowledged by then."""

    at: datetime
    policy: Policy
    replica: LedgerReplica
    expected: dict[tuple[str, str], Expected] = field(default_factory=dict)
    undecodable: list[Undecodable] = field(default_factory=list)
    later: int = 0
    rejected: int = 0
    misplaced: int = 0  # on a partition other than their listing's own: the ledger refuses them

    def view(self, agency: str) -> list[ViewRow]:
        """The rows `agency`'s copy should have held at T, by listing id."""
        rows = (project(state, agency, self.policy) for _, state in sorted(self.replica.states.items()))
        return [row for row in rows if row is not None]

    def record(self, change: Change) -> None:
        env = change.after.envelope
        for agency, op in change.views.items():
            self.expected[(agency, env.listing_id)] = Expected(env.version, op, env.recorded_at)


def event_time(env_recorded: datetime, env_decided: datetime, clock: TimeAxis) -> datetime:
    return env_recorded if clock == "recorded" else env_decided


def replay_to(
    connection: KafkaConnection,
    names: list[str],
    policy: Policy,
    at: datetime,
    clock: TimeAxis = "recorded",
    refused: set[Position] | None = None,
    meter: Meter | None = None,
    processes: int = 1,
) -> PastState:
    """Fold every listing event known at `at` (by `clock`) from the topics `names`, in `processes`."""
    work = partial(_replay_share, connection, names, policy, at, clock, refused or set())
    parts = shares(connection, names, processes) if processes > 1 else []
    return merged(fan_out(work, parts, meter))


def _replay_share(
    connection: KafkaConnection,
    names: list[str],
    policy: Policy,
    at: datetime,
    clock: TimeAxis,
    refused: set[Position],
    partitions: Share | None,
    meter: Meter | None,
) -> PastState:
    """The fold of the partitions numbered in `partitions` (all if None) of every topic in `names`."""
    past = PastState(at, policy, LedgerReplica(policy))
    past.replica.on_change = past.record
    placements = Placements(partition_counts(connection, names))
    with gc_paused():
        for item in decoded(messages(connection, names, meter, partitions), on_bad=past.undecodable.append):
            env, where = item.event.envelope, item.position
            if where in refused:
                past.rejected += 1
            elif placements.misplaced(env.listing_id, where):
                past.misplaced += 1
            elif event_time(env.recorded_at, env.occurred_at, clock) > at:
                past.later += 1
            else:
                past.replica.feed(item)
    return past


def merged(parts: list[PastState]) -> PastState:
    """One past state from those of disjoint shares of the partitions (each listing is in one)."""
    whole, *rest = parts
    for part in rest:
        whole.replica.listings.update(part.replica.listings)
        whole.replica.refused += part.replica.refused
        whole.expected.update(part.expected)
        whole.undecodable += part.undecodable
        whole.later, whole.rejected = whole.later + part.later, whole.rejected + part.rejected
        whole.misplaced += part.misplaced
    whole.undecodable.sort(key=lambda bad: bad.position)
    return whole


def acknowledged(
    connection: KafkaConnection, applied_topics: list[str], at: datetime, meter: Meter | None = None
) -> dict[tuple[str, str], int]:
    """The newest version each copy had acknowledged, per listing, by `at`."""
    newest: dict[tuple[str, str], int] = {}
    for item in decoded(messages(connection, applied_topics, meter)):
        ack = item.event
        if isinstance(ack, CopyApplied) and ack.applied_at <= at:
            key = (ack.copy_agency, ack.envelope.listing_id)
            newest[key] = max(newest.get(key, 0), ack.envelope.version)
    return newest


@dataclass(frozen=True)
class Behind:
    """A copy that had not acknowledged its view's last change by T (`have` 0: nothing at all)."""

    agency: str
    listing: str
    want: Expected
    have: int


def stale(past: PastState, acks: dict[tuple[str, str], int], sla: float = 0.0) -> list[Behind]:
    """Every copy behind its view at T for longer than `sla` seconds, by agency and listing."""
    out = []
    for (agency, listing), want in sorted(past.expected.items()):
        have = acks.get((agency, listing), 0)
        if have < want.version and (past.at - want.since).total_seconds() > sla:
            out.append(Behind(agency, listing, want, have))
    return out


def expected_digest(rows: Iterable[ViewRow]) -> Digest:
    """The digest a copy holding exactly `rows` must report (the reconciler's anti-entropy measure)."""
    return Digest.of(
        (row.listing_id, leaf(row.listing_id, row.version, row.status, row.row_hash())) for row in rows
    )
