"""Whether an event read from a listing topic changes its listing: the ledger's one judgement.

The ledger applies it and the audit's replay re-runs it. Both call these two functions,
so what the audit says the ledger knew is what the ledger did know, by construction,
not by care. (The publisher asks the ledger itself: it reads `ledger` and `rejected`.)

`gate` looks at the message alone (a listing event, on its author's topic, keyed by
its listing, on its listing's own partition); the caller then checks that it is sealed
by its agency's key (`sealing.check_seal`: it hashes Avro bytes, so it stays out of
the domain); `judge` looks at it against the listing's state (`listing.admit` for order
and authority, then `rules.check_event` for content). Pure: no Kafka, no Avro.

The partition matters as much as the key: the ledger keeps each listing's state in the
partition its key hashes to, so an event on another partition, even a byte-identical copy
of one already applied, would be judged against no state at all and start the listing
over. It is refused instead, whoever wrote it (a replay, or a producer whose partitioner
is not murmur2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.core import rules
from services.core.errors import RuleViolation
from services.core.events import Event, ListingEvent, ListingState
from services.core.listing import Decision, admit, evolve, is_listing_event, refuse
from services.core.partitioner import partition_of
from services.core.policy import Policy


@dataclass(frozen=True)
class Placement:
    """Which partition a message was read from, of how many its topic has."""

    partition: int
    partitions: int


def gate(
    event: Event,
    topic: str,
    key: bytes | None,
    authors: Mapping[str, str],
    placement: Placement | None = None,
) -> Decision | None:
    """The refusal of a message the ledger may not even consider, or None if it may (seal aside).

    Without a `placement` the partition is not checked (a reader that folds every
    partition into one state cannot be misled by it)."""
    env = event.envelope
    if not is_listing_event(event):
        return refuse("not_a_listing_event", f"{type(event).__name__} on a listing topic")
    if not env.listing_id or not env.listing_id.isprintable():
        return refuse("bad_listing_id", f"listing id {env.listing_id!r} is empty or not printable")
    author = authors.get(topic)
    if env.agency != author:
        return refuse("wrong_topic", f"an event by {env.agency} on {topic}, which only {author} may write")
    if key != env.listing_id.encode():
        reason = f"keyed {key!r}, not by its listing id {env.listing_id}"
        return refuse("wrong_key", reason)
    if placement is not None:
        return misplaced(env.listing_id, placement)
    return None


def misplaced(listing_id: str, placement: Placement) -> Decision | None:
    """The refusal of an event read from a partition other than its listing's own."""
    own = partition_of(listing_id.encode(), placement.partitions)
    if placement.partition == own:
        return None
    reason = (
        f"{listing_id} belongs in partition {own} of {placement.partitions}, not {placement.partition}: "
        "a replay or a producer that does not partition by murmur2(listing id)"
    )
    return refuse("wrong_partition", reason)


def judge(state: ListingState | None, event: ListingEvent, policy: Policy) -> Decision:
    """Apply (with the listing it makes), duplicate, hold (its predecessor is not read yet) or refuse.

    A change's next state is built once, before the content rules (a correction is judged by the
    listing it makes); an issue's after them (the rules judge the event's own content first)."""
    decision = admit(state, event, policy)
    if decision.action != "apply":
        return decision
    after = None if state is None else evolve(state, event)
    try:
        rules.check_event(state, event, policy, after)
    except RuleViolation as e:
        return refuse(e.code, e.message)
    return Decision("apply", after=evolve(state, event) if after is None else after)
