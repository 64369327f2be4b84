"""Every topic named once: its key, what it carries, and how Kafka keeps it (DESIGN.md §4).

A `namespace` prefixes every name, so tests (and side-by-side deployments) never
see each other's data. Listing topics are the system of record: kept forever and
never compacted. `ledger` and `views.*` are compacted: the latest state per listing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

KEEP_FOREVER = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
COMPACTED = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.5"}
BACKBONE = "backbone"  # the agency id under which the backbone itself issues (expiries)
RECONCILER = "reconciler"  # the envelope agency of every event the reconciler emits (repairs, findings)


@dataclass(frozen=True)
class TopicSpec:
    """One topic: name, what its key is, which events it carries, and its configuration."""

    name: str
    key: str
    carries: tuple[str, ...]
    config: dict[str, str] = field(default_factory=dict)


LISTING_EVENT_NAMES = (
    "ListingIssued",
    "ListingCorrected",
    "ListingRevoked",
    "ListingExpired",
    "ExemptionGranted",
    "ObjectionFiled",
    "ObjectionResolved",
)


@dataclass(frozen=True)
class Topics:
    """Topic names and specs for one deployment (or one test)."""

    namespace: str = ""

    def listings(self, agency: str) -> str:
        return f"{self.namespace}listings.{agency}"

    def views(self, agency: str) -> str:
        return f"{self.namespace}views.{agency}"

    @property
    def ledger(self) -> str:
        return f"{self.namespace}ledger"

    def copies_applied(self, agency: str) -> str:
        """One topic per copy, so ACLs stop a copy acknowledging in another agency's name."""
        return f"{self.namespace}copies.applied.{agency}"

    def copies_digests(self, agency: str) -> str:
        return f"{self.namespace}copies.digests.{agency}"

    def all_copies_applied(self, enforcers: Iterable[str]) -> list[str]:
        return [self.copies_applied(a) for a in sorted(set(enforcers))]

    def all_copies_digests(self, enforcers: Iterable[str]) -> list[str]:
        return [self.copies_digests(a) for a in sorted(set(enforcers))]

    def reporting_copy(self, topic: str) -> str | None:
        """The agency whose copy alone may write `topic` (an acknowledgement or digest topic)."""
        for prefix in (self.copies_applied(""), self.copies_digests("")):
            if topic.startswith(prefix):
                return topic[len(prefix) :]
        return None

    @property
    def findings(self) -> str:
        return f"{self.namespace}findings"

    @property
    def rejected(self) -> str:
        return f"{self.namespace}rejected"

    def listing_authors(self, issuers: Iterable[str]) -> dict[str, str]:
        """Each listing topic and the only agency that may write it: every issuer, and the backbone
        (its expiries). The ledger, the publisher and the audit all read exactly these topics."""
        return {self.listings(a): a for a in sorted({*issuers, BACKBONE})}

    def specs(self, issuers: Iterable[str], enforcers: Iterable[str]) -> list[TopicSpec]:
        """Every topic a backbone with these issuing and enforcing agencies needs."""
        listing = [
            TopicSpec(name, "listing_id", LISTING_EVENT_NAMES, KEEP_FOREVER)
            for name in self.listing_authors(issuers)
        ]
        copies = sorted(set(enforcers))
        views = [TopicSpec(self.views(a), "listing_id", ("ViewChanged",), COMPACTED) for a in copies]
        reports = [
            *(
                TopicSpec(self.copies_applied(a), "agency+listing_id", ("CopyApplied",), KEEP_FOREVER)
                for a in copies
            ),
            *(TopicSpec(self.copies_digests(a), "agency", ("CopyDigest",), COMPACTED) for a in copies),
        ]
        return [
            *listing,
            TopicSpec(self.ledger, "listing_id", ("ListingState",), COMPACTED),
            *views,
            *reports,
            TopicSpec(self.findings, "agency+listing_id", ("Finding",), KEEP_FOREVER),
            TopicSpec(self.rejected, "listing_id", ("Rejected",), KEEP_FOREVER),
        ]


def copy_key(agency: str, listing_id: str) -> str:
    """Key of `copies.applied` and `findings`: one agency's copy of one listing."""
    return f"{agency}+{listing_id}"
