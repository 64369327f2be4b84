"""`timeline`: everything the log says about one listing, or every listing of one subject, in order.

Listing events come from the listing topics (the system of record), folded as the
ledger folds them so that each step also says which agencies' views it changed.
Against those expected view changes stand the copies' acknowledgements
(`copies.applied`), the reconciler's findings and the refusals (`rejected`): the
story of who decided what, and when each agency's copy learnt of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from confluent_kafka import Message

from services.audit.entries import Gathered, copy_rows, story_rows
from services.audit.fold import LedgerReplica
from services.audit.output import Report, Table
from services.audit.replay import Meter, Replayed, decoded, listing_topics, messages, refused_positions
from services.core.connection import KafkaConnection
from services.core.events import CopyApplied, Finding, ListingIssued, Rejected
from services.core.policy import Policy
from services.core.topics import Topics

COLUMNS = ("time", "listing", "version", "agency", "event", "detail", "decided", "basis", "lag_s", "position")
TEXT_COLUMNS = ("time", "agency", "event", "detail", "decided")
COPY_COLUMNS = ("agency", "listing", "expected", "applied", "state", "since")


def mentioning(source: Iterable[Message], needles: list[bytes]) -> Iterator[Message]:
    """A cheap filter before decoding: listing ids and subject_refs are stored verbatim in Avro."""
    return (msg for msg in source if any(needle in (msg.value() or b"") for needle in needles))


def subject_listings(
    connection: KafkaConnection, names: list[str], subject_ref: str, meter: Meter | None
) -> set[str]:
    """Every listing ever issued against `subject_ref` (a correction cannot change the subject)."""
    found = set()
    for item in decoded(mentioning(messages(connection, names, meter), [subject_ref.encode()])):
        if isinstance(item.event, ListingIssued) and item.event.subject_ref == subject_ref:
            found.add(item.event.envelope.listing_id)
    return found


def gather(
    connection: KafkaConnection,
    topics: Topics,
    policy: Policy,
    listings: set[str],
    meter: Meter | None = None,
) -> Gathered:
    """One pass over the listing topics and the backbone's own topics, keeping what names `listings`.

    Events the ledger refused (their positions are in `rejected`) are kept apart, never folded:
    the timeline tells what the ledger did, and a forged revocation did not revoke anything.
    """
    sources = listing_topics(topics, policy)
    found = Gathered(LedgerReplica(policy), refused=refused_positions(connection, topics.rejected))
    found.replica.on_change = found.changes.append
    names = [*sources, *topics.all_copies_applied(policy.enforcers), topics.findings, topics.rejected]
    stream = mentioning(messages(connection, names, meter), [lid.encode() for lid in sorted(listings)])
    for item in decoded(stream, on_bad=found.undecodable.append):
        if item.event.envelope.listing_id in listings:
            _sort_in(found, item, item.position.topic in sources)
    return found


def _sort_in(found: Gathered, item: Replayed, from_listing_topic: bool) -> None:
    event = item.event
    if from_listing_topic and item.position in found.refused:
        found.withheld[item.position] = item
    elif from_listing_topic:
        found.replica.feed(item)
    elif isinstance(event, CopyApplied):
        found.acks.append(event)
    elif isinstance(event, Finding):
        found.findings.append(event)
    elif isinstance(event, Rejected):
        found.rejected.append(event)


def report(found: Gathered, title: str) -> Report:
    """The story table, then each copy's standing; several listings add a listing column."""
    several = len(found.replica.states) > 1
    text = ("time", "listing", *TEXT_COLUMNS[1:]) if several else TEXT_COLUMNS
    notes = [
        f"{lid}: {state.status} at v{state.envelope.version}"
        + (f" — {state.end_reason}" if state.end_reason else "")
        for lid, state in sorted(found.replica.states.items())
    ]
    notes += [
        f"held: {item.position} waits for an earlier version the log does not hold"
        for item in found.replica.held_events()
    ]
    notes += [f"undecodable: {bad.position}: {bad.reason}" for bad in found.undecodable]
    return Report(
        [
            Table("timeline", title, COLUMNS, story_rows(found), text),
            Table("copies", "Each enforcing agency's copy", COPY_COLUMNS, copy_rows(found)),
        ],
        notes,
    )
