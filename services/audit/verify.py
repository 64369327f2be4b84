"""`verify`: every signature and every per-listing hash chain, across all listing topics.

An event is sound when its bytes decode, it sits on its own agency's topic, its
hash matches its content and its signature is its agency's. A chain is sound when
its versions run 1, 2, 3... without gaps or forks and each event's `prev_hash` is
the hash of the version before. Altering any byte of an event breaks its hash (or,
if the hash was recomputed, its signature and the next link); removing one leaves a
gap. Each break is reported where it sits: topic, partition, offset.

Two kinds of event break no chain yet are reported too, because the ledger refuses them
and someone wrote them: an event on a partition other than its listing's own (`wrong_partition`,
even when byte-identical to a sound one: replayed there it would have started the listing
over) and an exact copy of an event already in the log (`replay`). Neither is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from services.audit.parallel import Share, fan_out, shares
from services.audit.replay import Meter, Placements, Replayed, Undecodable, decoded, gc_paused, messages
from services.audit.signatures import SignatureChecks
from services.core.admission import Placement, misplaced
from services.core.connection import KafkaConnection
from services.core.kafka import partition_counts
from services.core.listing import is_listing_event
from services.core.policy import Policy
from services.core.position import Position
from services.core.sealing import SignatureClaim, claim_of

REFUSED = "the ledger refuses it; someone wrote it there"


@dataclass(frozen=True)
class Broken:
    """One broken event or link."""

    position: Position
    code: str
    reason: str
    listing: str = ""
    version: int | None = None
    agency: str = ""


@dataclass(frozen=True)
class Link:
    """What the chain check needs of one event."""

    version: int
    hash: str
    prev_hash: str
    event_id: str
    position: Position


@dataclass
class Verification:
    events: int = 0
    listings: int = 0
    broken: list[Broken] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.broken


def _fault(item: Replayed, code: str, reason: str) -> Broken:
    env = item.event.envelope
    return Broken(item.position, code, reason, env.listing_id, env.version, env.agency)


def check_event(item: Replayed, owner: str, policy: Policy) -> Broken | None:
    """Whether one event may stand where it is: right topic, intact hash, its agency's signature."""
    claim = claim_event(item, owner, policy)
    if not isinstance(claim, SignatureClaim):
        return claim
    fault = claim.fault()
    return None if fault is None else _fault(item, *fault)


def claim_event(item: Replayed, owner: str, policy: Policy) -> Broken | SignatureClaim:
    """`check_event` up to the signature: the fault found, or the signature claim left to check."""
    event = item.event
    actor = event.envelope.agency
    if not is_listing_event(event):
        return _fault(item, "not_listing_event", f"a {type(event).__name__} on a listing topic")
    if actor != owner:
        return _fault(item, "wrong_topic", f"{actor} wrote on {owner}'s listing topic")
    agency = policy.agency_by_id.get(actor)
    claim = claim_of(item.decoded, agency.public_key if agency is not None else "")
    return claim if isinstance(claim, SignatureClaim) else _fault(item, *claim)


def check_placement(item: Replayed, placements: Placements) -> Broken | None:
    """Whether an event sits on its listing's own partition, as the ledger requires."""
    if not is_listing_event(item.event) or not placements.misplaced(
        item.event.envelope.listing_id, item.position
    ):
        return None
    where = item.position
    decision = misplaced(
        item.event.envelope.listing_id, Placement(where.partition, placements.counts[where.topic])
    )
    return None if decision is None else _fault(item, decision.code, f"{decision.reason} ({REFUSED})")


def chain_breaks(listing: str, links: list[Link]) -> list[Broken]:
    """Gaps, forks, broken links and replays (exact copies of an earlier event) of one listing's chain."""
    by_version: dict[int, dict[tuple[str, str], Link]] = {}
    broken: list[Broken] = []
    for link in sorted(links, key=lambda k: k.position):
        same = by_version.setdefault(link.version, {})
        first = same.setdefault((link.event_id, link.hash), link)
        if first is not link:
            reason = f"an exact copy of the event at {first.position}: a replay ({REFUSED})"
            broken.append(Broken(link.position, "replay", reason, listing, link.version))
    prev_hash, expected = "", 1
    for version in sorted(by_version):
        candidates = list(by_version[version].values())
        chosen = _step(listing, version, expected, prev_hash, candidates, broken)
        prev_hash, expected = chosen.hash, version + 1
    return broken


def _step(
    listing: str, version: int, expected: int, prev_hash: str, candidates: list[Link], broken: list[Broken]
) -> Link:
    """Check one version of a chain; return the event the chain continues from."""
    first = candidates[0]
    if version < 1:
        broken.append(Broken(first.position, "bad_version", "versions start at 1", listing, version))
        return first
    if version != expected:
        missing = (
            f"version {expected}" if version == expected + 1 else f"versions {expected} to {version - 1}"
        )
        broken.append(
            Broken(first.position, "version_gap", f"{missing} missing before this event", listing, version)
        )
        return first
    linked = [c for c in candidates if c.prev_hash == prev_hash]
    for c in candidates:
        if c not in linked:
            broken.append(Broken(c.position, "broken_link", _link_reason(version), listing, version))
    for c in linked[1:]:
        broken.append(
            Broken(
                c.position,
                "fork",
                f"a second version {version}, beside {linked[0].position}",
                listing,
                version,
            )
        )
    return linked[0] if linked else first


def _link_reason(version: int) -> str:
    if version == 1:
        return "version 1 must not link to a previous event"
    return f"prev_hash does not match the hash of version {version - 1}"


def verify(
    connection: KafkaConnection,
    owners: dict[str, str],
    policy: Policy,
    meter: Meter | None = None,
    processes: int = 1,
) -> Verification:
    """Check every event of the listing topics in `owners` (topic -> owning agency), then every chain."""
    work = partial(_verify_share, connection, owners, policy)
    parts = shares(connection, owners, processes) if processes > 1 else []
    return merged(fan_out(work, parts, meter))


def _verify_share(
    connection: KafkaConnection,
    owners: dict[str, str],
    policy: Policy,
    partitions: Share | None,
    meter: Meter | None,
) -> Verification:
    """The check of the partitions numbered in `partitions` (all if None) of every listing topic;
    the signatures are checked in threads meanwhile (`SignatureChecks`), every one of them."""
    share = _Share(Placements(partition_counts(connection, owners)))

    def undecodable(bad: Undecodable) -> None:
        share.result.events += 1
        share.result.broken.append(Broken(bad.position, "undecodable", bad.reason))

    with gc_paused(), SignatureChecks(share.signed) as signatures:
        for item in decoded(messages(connection, list(owners), meter, partitions), on_bad=undecodable):
            share.result.events += 1
            claim = claim_event(item, owners[item.position.topic], policy)
            if isinstance(claim, SignatureClaim):
                signatures.add(item, claim)
            else:
                share.checked(item, claim)
        signatures.finish()
    return share.verification()


@dataclass
class _Share:
    """One process's verification as its events' checks come in (signatures later than the rest)."""

    placements: Placements
    result: Verification = field(default_factory=Verification)
    chains: dict[str, list[Link]] = field(default_factory=dict)

    def signed(self, item: Replayed, fault: tuple[str, str] | None) -> None:
        self.checked(item, None if fault is None else _fault(item, *fault))

    def checked(self, item: Replayed, fault: Broken | None) -> None:
        """Record an event's fault, if any; a sound one's placement; its link, unless misplaced."""
        misplaced_at = None if fault is not None else check_placement(item, self.placements)
        self.result.broken += [f for f in (fault, misplaced_at) if f is not None]
        if is_listing_event(item.event) and misplaced_at is None:
            env = item.event.envelope
            link = Link(env.version, env.hash, env.prev_hash, env.event_id, item.position)
            self.chains.setdefault(env.listing_id, []).append(link)

    def verification(self) -> Verification:
        for listing, links in self.chains.items():
            self.result.broken += chain_breaks(listing, links)
        self.result.listings = len(self.chains)
        return self.result


def merged(parts: list[Verification]) -> Verification:
    """One verification from those of disjoint shares of the partitions (each listing is in one)."""
    whole = Verification(sum(p.events for p in parts), sum(p.listings for p in parts))
    whole.broken = sorted((b for p in parts for b in p.broken), key=lambda b: b.position)
    return whole
