"""What the ledger does with one consumed message: pure functions, no Kafka, no clock.

`handle` takes the message, the listing's entry and its held messages as the tables
hold them, and returns the new entry, the new held list and every message to publish.
The worker (`worker.py`, wired by `app.py`) only reads the tables, calls `handle`, writes
the tables and sends what it returns, so everything the ledger decides is tested here directly.

Order of checks: the bytes must decode; `admission.gate` then asks for a listing event
on its author's topic, keyed by its listing, on its listing's partition, with a seal
that holds; `admission.judge` rules on versions, authority and content. A refusal at
any step goes to `rejected` with the reason and the raw payload, and processing goes on.
The worker may open a message ahead of its turn (`opened`: decoded, hash and key checked) and
check its signature in a thread (`seals`); it hands `handle` the `Read` that makes, which
`parse` judges exactly as the one it would make itself (`read_now`).

An event already applied comes back two ways. Read again at the position it was applied
from, it is the ledger's own re-reading after a crash (Faust re-delivers what it had not
committed): what it was to publish is re-stated, byte for byte, and nothing goes to
`rejected`. Anywhere else it is a replay: refused into `rejected` ("replay"), with an id
that depends only on its position, so re-reading the replay itself adds no second record.
One exception: the backbone's expiry asked for again by a restarted worker (same id, at another
offset of the backbone's own topic) changes nothing and publishes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

from services.core.admission import Placement, gate
from services.core.errors import ContractError
from services.core.events import Envelope, Event, ListingEvent, ListingExpired, ListingState
from services.core.fold import Listing, offer
from services.core.listing import Decision, is_listing_event, refuse
from services.core.policy import Policy
from services.core.position import Position
from services.core.rejections import rejected
from services.core.sealing import SignatureClaim, claim_of
from services.core.serde import Decoded, decode_full
from services.core.topics import BACKBONE, Topics
from services.core.views import LIVE, view_change
from services.ledger.record import Entry, Inbound


@dataclass(frozen=True)
class Outbound:
    """One message to publish: topic, key and event; `encoded`, the event's bytes when already made
    (a listing's new state is encoded once, for its table entry and its `ledger` record)."""

    topic: str
    key: str
    event: Event
    encoded: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Context:
    """What the handler needs to know about the deployment."""

    policy: Policy
    topics: Topics
    partitions: int  # of every listing topic (the ledger refuses to start otherwise)

    @cached_property
    def authors(self) -> dict[str, str]:
        """Listing topic -> the only agency that may write to it (asked for every message)."""
        return self.topics.listing_authors(self.policy.issuers)

    @cached_property
    def enforcers(self) -> list[str]:
        """Every agency that enforces a measure, sorted (the policy works it out on each call)."""
        return self.policy.enforcers


@dataclass
class Handled:
    """The listing's entry and held messages after one message, and what to publish."""

    entry: Entry | None
    held: list[Inbound]
    out: list[Outbound] = field(default_factory=list)
    applied: int = 0


Fault = tuple[str, str] | None  # a seal's fault (reason code, sentence); None: the seal holds


@dataclass(frozen=True)
class Read:
    """A message opened: its decoding (or why it has none) and its seal's fault (None: it holds)."""

    decoded: Decoded | ContractError
    fault: Fault = None


def opened(msg: Inbound, ctx: Context) -> tuple[Decoded | ContractError, Fault | SignatureClaim]:
    """The message decoded and its seal's hash and key checked: what is left is a fault, or the
    signature to check (`SignatureClaim.fault`, the costly part, which the worker runs in threads)."""
    try:
        decoded = decode_full(msg.payload, msg.topic, msg.partition, msg.offset)
    except ContractError as e:
        return e, None
    agency = ctx.policy.agency_by_id.get(decoded.event.envelope.agency)
    return decoded, claim_of(decoded, agency.public_key if agency else "")


def read_now(msg: Inbound, ctx: Context) -> Read:
    """The message opened and its signature checked, here and now."""
    decoded, claim = opened(msg, ctx)
    return Read(decoded, claim.fault() if isinstance(claim, SignatureClaim) else claim)


def handle(
    msg: Inbound, entry: Entry | None, held: list[Inbound], ctx: Context, read: Read | None = None
) -> Handled:
    """Process `msg` against its listing; apply any held message whose turn has come (`core.fold`).

    `read`: `msg` already opened and its signature checked (else it is, here); held messages
    released by it are read here."""
    handled = Handled(entry, list(held))
    listing = Listing(entry.state if entry else None, handled.held)
    handled.applied = offer(listing, msg, ctx.policy, _Verdicts(handled, ctx, msg, read))
    return handled


@dataclass(frozen=True)
class _Verdicts:
    """The ledger's side of the fold: raw messages in, messages to publish out."""

    handled: Handled
    ctx: Context
    msg: Inbound
    read: Read | None

    def event_of(self, msg: Inbound) -> ListingEvent | None:
        parsed = parse(msg, self.ctx, self.read if msg is self.msg else None)
        if isinstance(parsed, Outbound):
            self.handled.out.append(parsed)
            return None
        return parsed

    def on_applied(self, msg: Inbound, before: ListingState | None, after: ListingState) -> None:
        """Keep the entry, publish the new state and every view change it makes."""
        entry, ctx = self.handled.entry, self.ctx
        ever = entry.ever if entry else frozenset()
        self.handled.entry = Entry(after, ever | entitled(after, ctx.policy), _read_at(entry, msg))
        encoded = self.handled.entry.state_bytes
        self.handled.out.append(Outbound(ctx.topics.ledger, after.envelope.listing_id, after, encoded))
        for agency in affected(before, after, ctx):
            change = view_change(before, after, agency, ctx.policy, after.envelope.recorded_at)
            if change is not None:
                self.handled.out.append(Outbound(ctx.topics.views(agency), after.envelope.listing_id, change))

    def on_duplicate(self, msg: Inbound, event: ListingEvent, state: ListingState | None) -> None:
        entry = self.handled.entry
        if entry is None:
            return
        first = entry.read_from(event.envelope.event_id)
        if first is None or first == msg.position:
            self.handled.out.extend(restate(entry, self.ctx))
        elif not _asked_again(event):
            reason = _replay_reason(event, first)
            self.handled.out.append(reject(msg, self.ctx, "replay", reason, event.envelope))

    def on_refused(self, msg: Inbound, event: ListingEvent, decision: Decision) -> None:
        self.handled.out.append(reject(msg, self.ctx, decision.code, decision.reason, event.envelope))


def _asked_again(event: ListingEvent) -> bool:
    """Whether `event` is the backbone's expiry asked for again: a worker restarted after publishing it
    and before applying it asks once more, under the same id (`expiry.expiry_of`), sealed anew at
    another offset. Only the ledger writes the backbone's topic, so it is no replay: nothing to say."""
    return isinstance(event, ListingExpired) and event.envelope.agency == BACKBONE


def parse(msg: Inbound, ctx: Context, read: Read | None = None) -> ListingEvent | Outbound:
    """The message's listing event, or the `Rejected` that says why it is not one we may consider.

    `read`: the message already opened (`read_now` if not); its seal's fault counts only once the
    gate let the message through, as if the seal were checked after it."""
    read = read or read_now(msg, ctx)
    if isinstance(read.decoded, ContractError):
        return reject(msg, ctx, "undecodable", str(read.decoded))
    event = read.decoded.event
    placement = Placement(msg.partition, ctx.partitions)
    sealed = refuse(*read.fault) if read.fault is not None else None
    refusal = gate(event, msg.topic, msg.key, ctx.authors, placement) or sealed
    if refusal is not None:
        # A bad listing id cannot key the rejection; the message's own key does.
        env = event.envelope if refusal.code != "bad_listing_id" else None
        return reject(msg, ctx, refusal.code, refusal.reason, env)
    assert is_listing_event(event)  # `gate` refuses anything else
    return event


def _replay_reason(event: ListingEvent, first: Position) -> str:
    topic, partition, offset = first
    env = event.envelope
    return (
        f"a replay of event {env.event_id} (version {env.version} of {env.listing_id}), "
        f"applied from {topic}[{partition}]@{offset}; it changes nothing"
    )


def _read_at(entry: Entry | None, msg: Inbound) -> tuple[Position, ...]:
    """Positions of the listing's events, this one added; none for an entry kept without them."""
    if entry is None:
        return (msg.position,)
    known = len(entry.read_at) == len(entry.state.event_ids)
    return (*entry.read_at, msg.position) if known else ()


def affected(before: ListingState | None, after: ListingState, ctx: Context) -> list[str]:
    """The agencies, in order, that `view_change(before, after, ...)` has a change for: those whose copy
    holds a row of either. Every other enforcer's change is None; asking only these spares building
    and discarding a projection per enforcer per event."""
    either = entitled(after, ctx.policy) | (frozenset() if before is None else entitled(before, ctx.policy))
    return [agency for agency in ctx.enforcers if agency in either]


def entitled(state: ListingState, policy: Policy) -> frozenset[str]:
    """Agencies whose copy holds a row of `state`."""
    if state.status not in LIVE:
        return frozenset()
    return frozenset(policy.entitled_agencies(state.measures))


def restate(entry: Entry, ctx: Context) -> list[Outbound]:
    """Everything the listing's latest version published, again, with the same ids and bytes.

    A duplicate is what the ledger sees when it re-reads messages after a crash: its table
    may already hold their effect while what they were to publish never left. Re-stating
    is harmless to copies (they apply idempotently) and makes that loss impossible. Every
    agency that ever held a row gets the latest word on it: its row, or its deletion.
    """
    state, listing_id = entry.state, entry.state.envelope.listing_id
    out = [Outbound(ctx.topics.ledger, listing_id, state)]
    for agency in sorted(entry.ever | entitled(state, ctx.policy)):
        before = _as_held_by(state, agency, ctx.policy)
        change = view_change(before, state, agency, ctx.policy, state.envelope.recorded_at)
        if change is not None:
            out.append(Outbound(ctx.topics.views(agency), listing_id, change))
    return out


def _as_held_by(state: ListingState, agency: str, policy: Policy) -> ListingState | None:
    """A `before` that makes `view_change` emit what it emitted for this version.

    An upsert's reason depends only on whether there was a before (issue or later
    version); a delete is emitted only to an agency whose row `view_change` knows of,
    so for an agency that lost its row the before is the listing as that agency held it.
    """
    if state.envelope.version == 1 and agency in entitled(state, policy):
        return None
    if agency in entitled(state, policy):
        return state
    enforced = [m for m in policy.measure_by_code if agency in policy.measure_by_code[m].enforced_by]
    return state.model_copy(update={"status": "active", "measures": enforced[:1]})


def overdue(held: list[Inbound], now: datetime, limit: timedelta) -> list[Inbound]:
    """The held messages that have waited longer than `limit` for their predecessor."""
    return [m for m in held if now - m.timestamp >= limit]


def give_up(held: list[Inbound], now: datetime, limit: timedelta, ctx: Context) -> Handled:
    """Refuse, as "gap never filled", every held message older than `limit` at `now`.

    `now` is the time the worker decided to give up, carried by the message that asks for
    it, so re-processing that message after a crash refuses the same messages again."""
    late = overdue(held, now, limit)
    outcome = Handled(None, [m for m in held if m not in late])
    for msg in late:
        waited = int((now - msg.timestamp).total_seconds())
        limit_s = int(limit.total_seconds())
        reason = f"held {waited} s for the version before it, which never arrived (limit {limit_s} s)"
        parsed = parse(msg, ctx)
        env = parsed.envelope if not isinstance(parsed, Outbound) else None
        outcome.out.append(reject(msg, ctx, "gap_never_filled", reason, env))
    return outcome


def reject(msg: Inbound, ctx: Context, code: str, reason: str, env: Envelope | None = None) -> Outbound:
    """`msg` refused into `rejected`: the same record however often the message is re-read."""
    key = env.listing_id if env else (msg.key or b"").decode(errors="replace")
    version = env.version if env else 0
    record = rejected("ledger", msg.position, code, reason, msg.payload, msg.timestamp, key, version)
    return Outbound(ctx.topics.rejected, key, record)
