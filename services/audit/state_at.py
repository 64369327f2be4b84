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
from services.core.digest import MODULUS, Digest, leaf
from services.core.events import CopyApplied, ListingState
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


@dataclass(frozen=True)
class Wanted:
    """What a caller prints beyond the summary, so each replay process hands back only that."""

    agency: str | None = None  # this agency's expected view, row by row
    ledger: bool = False  # every listing's state
    expected: bool = False  # the last view change each copy had to acknowledge (`--compare`)


@dataclass
class PastState:
    """What the ledger held at `at`, as a report: each enforcer's expected view as a digest (and the
    wanted agency's rows), the listings' statuses, and what the replay left out.

    A replay process folds its share of the log into a `Folding` and hands back only this: the
    folded states themselves stay in the process (pickling them cost ~270 µs a listing)."""

    at: datetime
    policy: Policy
    wanted: Wanted = field(default_factory=Wanted)
    digests: dict[str, Digest] = field(default_factory=dict)
    rows: list[ViewRow] = field(default_factory=list)
    states: dict[str, ListingState] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    expected: dict[tuple[str, str], Expected] = field(default_factory=dict)
    undecodable: list[Undecodable] = field(default_factory=list)
    held: list[Position] = field(default_factory=list)  # events waiting for a version missing at T
    refused: int = 0  # events the ledger's order rules refuse
    later: int = 0
    rejected: int = 0
    misplaced: int = 0  # on a partition other than their listing's own: the ledger refuses them

    def view(self, agency: str) -> list[ViewRow]:
        """The rows `agency`'s copy should have held at T, by listing id (the wanted agency's only)."""
        if agency != self.wanted.agency:
            raise ValueError(f"the replay kept {self.wanted.agency}'s view rows, not {agency}'s")
        return self.rows


@dataclass
class Folding:
    """One replay process's fold in progress: the replica, and what it counts on the way."""

    past: PastState
    replica: LedgerReplica

    def record(self, change: Change) -> None:
        env = change.after.envelope
        for agency, op in change.views.items():
            self.past.expected[(agency, env.listing_id)] = Expected(env.version, op, env.recorded_at)

    def report(self) -> PastState:
        """The past state to hand back: the views' digests and what `wanted` asks for, not the fold."""
        past, states = self.past, self.replica.states
        in_order = [state for _, state in sorted(states.items())]
        for agency in past.policy.enforcers:
            rows = [row for state in in_order if (row := project(state, agency, past.policy)) is not None]
            past.digests[agency] = expected_digest(rows)
            if agency == past.wanted.agency:
                past.rows = rows
        for state in states.values():
            past.statuses[state.status] = past.statuses.get(state.status, 0) + 1
        past.states = states if past.wanted.ledger else {}
        if not past.wanted.expected:
            past.expected = {}
        past.refused = len(self.replica.refused)
        past.held = [item.position for item in self.replica.held_events()]
        return past


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
    wanted: Wanted | None = None,
) -> PastState:
    """Fold every listing event known at `at` (by `clock`) from the topics `names`, in `processes`;
    report each view's digest and what `wanted` asks for."""
    work = partial(_replay_share, connection, names, policy, at, clock, refused or set(), wanted or Wanted())
    parts = shares(connection, names, processes) if processes > 1 else []
    return merged(fan_out(work, parts, meter))


def _replay_share(
    connection: KafkaConnection,
    names: list[str],
    policy: Policy,
    at: datetime,
    clock: TimeAxis,
    refused: set[Position],
    wanted: Wanted,
    partitions: Share | None,
    meter: Meter | None,
) -> PastState:
    """The fold of the partitions numbered in `partitions` (all if None) of every topic in `names`."""
    past = PastState(at, policy, wanted)
    folding = Folding(past, LedgerReplica(policy))
    folding.replica.on_change = folding.record if wanted.expected else None  # view ops: --compare only
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
                folding.replica.feed(item)
        return folding.report()


def merged(parts: list[PastState]) -> PastState:
    """One past state from those of disjoint shares of the partitions (each listing is in one)."""
    whole, *rest = parts
    for part in rest:
        for agency, digest in part.digests.items():
            whole.digests[agency] = _sum(whole.digests[agency], digest)
        whole.rows += part.rows
        whole.states.update(part.states)
        for status, n in part.statuses.items():
            whole.statuses[status] = whole.statuses.get(status, 0) + n
        whole.expected.update(part.expected)
        whole.undecodable += part.undecodable
        whole.held += part.held
        whole.refused, whole.later = whole.refused + part.refused, whole.later + part.later
        whole.rejected, whole.misplaced = whole.rejected + part.rejected, whole.misplaced + part.misplaced
    whole.rows.sort(key=lambda row: row.listing_id)
    whole.undecodable.sort(key=lambda bad: bad.position)
    whole.held.sort()
    return whole


def _sum(one: Digest, other: Digest) -> Digest:
    """The digest of two disjoint sets of rows: each bucket is a sum of leaves."""
    buckets = [(a + b) % MODULUS for a, b in zip(one.buckets, other.buckets, strict=True)]
    return Digest(one.size, buckets, one.rows + other.rows)


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
