"""Whether an event read from a listing topic changes its listing: the ledger's one judgement.

The ledger applies it and the audit's replay re-runs it. Both call these two functions,
so what the audit says the ledger knew is what the ledger did know, by construction,
not by care. (The publisher asks the ledger itself: it reads `ledger` and `rejected`.)

`gate` looks at the message alone (a listing event, on its author's topic, keyed by
its listing, sealed by its agency's key); `judge` looks at it against the listing's
state (`listing.admit` for order and authority, then `rules.check_event` for content).
"""

from __future__ import annotations

from collections.abc import Mapping

from services.core import rules
from services.core.crypto import check_seal
from services.core.errors import RuleViolation
from services.core.events import ListingEvent, ListingState
from services.core.listing import Decision, admit, is_listing_event, refuse
from services.core.policy import Policy
from services.core.serde import Decoded


def gate(
    decoded: Decoded, topic: str, key: bytes | None, authors: Mapping[str, str], policy: Policy
) -> Decision | None:
    """The refusal of a message the ledger may not even consider, or None if it may."""
    event, env = decoded.event, decoded.event.envelope
    if not is_listing_event(event):
        return refuse("not_a_listing_event", f"{type(event).__name__} on a listing topic")
    if not env.listing_id or not env.listing_id.isprintable():
        return refuse("bad_listing_id", f"listing id {env.listing_id!r} is empty or not printable")
    author = authors.get(topic)
    if env.agency != author:
        return refuse("wrong_topic", f"an event by {env.agency} on {topic}, which only {author} may write")
    if key != env.listing_id.encode():
        reason = f"keyed {key!r}, not by its listing id {env.listing_id}, so maybe in the wrong partition"
        return refuse("wrong_key", reason)
    agency = policy.agency_by_id.get(env.agency)
    fault = check_seal(decoded, agency.public_key if agency else "")
    return refuse(*fault) if fault is not None else None


def judge(state: ListingState | None, event: ListingEvent, policy: Policy) -> Decision:
    """Apply, duplicate, hold (its predecessor is not read yet) or refuse, with the reason."""
    decision = admit(state, event, policy)
    if decision.action != "apply":
        return decision
    try:
        rules.check_event(state, event, policy)
    except RuleViolation as e:
        return refuse(e.code, e.message)
    return decision
