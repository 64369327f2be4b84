"""Who may do what on the backbone's Kafka, derived from the policy: one list of grants.

Pure data (no Kafka client), so the rules are unit-tested and `accord acl plan` prints
exactly what `accord acl apply` enforces. The authorizer denies everything else
(`allow.everyone.if.no.acl.found=false`). Principals are namespaced like topics
(`<namespace><name>`), so several backbones can share a cluster without sharing users.

- an agency that issues writes only `listings.<own>`; reads the compacted `ledger` (current
  version of every listing, for corrections and revocations) and `rejected` (verdicts on its events);
- an agency that enforces reads only `views.<own>`; its copy (which runs as that agency) writes
  `copies.applied.<own>`, `copies.digests.<own>`, and `rejected` (a view message it cannot apply);
- ledger: reads every listing topic, writes `listings.backbone` (expiries), `ledger`, `views.*`,
  `rejected`, and owns its Faust group and internal topics (`<namespace>ledger-*`);
- reconciler: reads `ledger`, `views.*`, acknowledgements, digests and `findings` (what it already
  published); writes `findings`, repairs into `views.*`, and `rejected`; its lease is its own
  group `<principal>.lease`;
- audit: reads every topic, writes none;
- every principal: consumer groups and transactional ids that start with `<principal>.`.
The super user (`admin`) needs no grant: it is the cluster's, for administration only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.core.policy import Policy
from services.core.topics import BACKBONE, Topics

SERVICES = ("ledger", "reconciler", "audit")
READ, WRITE, ALL = "READ", "WRITE", "ALL"
TOPIC, GROUP, TRANSACTIONAL_ID = "TOPIC", "GROUP", "TRANSACTIONAL_ID"
LITERAL, PREFIXED = "LITERAL", "PREFIXED"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: `principal` may `operation` the resource (READ and WRITE imply DESCRIBE)."""

    principal: str
    resource: str
    name: str
    pattern: str
    operation: str

    def line(self) -> str:
        star = "*" if self.pattern == PREFIXED else ""
        return f"{self.principal:32} {self.operation:6} {self.resource.lower():16} {self.name}{star}"


def principal_name(namespace: str, name: str) -> str:
    """The SCRAM user (and `User:` principal) of an agency or a backbone service."""
    return f"{namespace}{name}"


def agencies(policy: Policy) -> list[str]:
    """Every agency that connects: issuers and enforcers (the backbone signs, it does not connect)."""
    return sorted({*policy.issuers, *policy.enforcers} - {BACKBONE})


def principals(policy: Policy, namespace: str) -> list[str]:
    return [principal_name(namespace, n) for n in [*agencies(policy), *SERVICES]]


def plan(policy: Policy, topics: Topics) -> list[Grant]:
    """Every grant the policy implies, sorted (so two plans compare and print alike)."""
    ns, enforcers = topics.namespace, sorted(policy.enforcers)
    grants = [*_ledger(topics, policy, ns), *_reconciler(topics, enforcers, ns), *_audit(topics, policy, ns)]
    for agency in agencies(policy):
        grants += _agency(topics, agency, agency in policy.issuers, agency in enforcers, ns)
    for user in principals(policy, ns):
        grants += _own_ids(user)
    return sorted(set(grants))


def _topic(user: str, operation: str, names: Iterable[str]) -> list[Grant]:
    return [Grant(f"User:{user}", TOPIC, name, LITERAL, operation) for name in names]


def _own_ids(user: str) -> list[Grant]:
    """Consumer groups and transactional ids of the principal's own: `<principal>.<purpose>`."""
    mine = f"{user}."
    return [
        Grant(f"User:{user}", GROUP, mine, PREFIXED, READ),
        Grant(f"User:{user}", TRANSACTIONAL_ID, mine, PREFIXED, WRITE),
    ]


def _agency(topics: Topics, agency: str, issues: bool, enforces: bool, ns: str) -> list[Grant]:
    user = principal_name(ns, agency)
    grants = []
    if issues:
        grants += _topic(user, WRITE, [topics.listings(agency)])
        grants += _topic(user, READ, [topics.ledger, topics.rejected])
    if enforces:
        grants += _topic(user, READ, [topics.views(agency)])
        grants += _topic(
            user, WRITE, [topics.copies_applied(agency), topics.copies_digests(agency), topics.rejected]
        )
    return grants


def _ledger(topics: Topics, policy: Policy, ns: str) -> list[Grant]:
    user = principal_name(ns, "ledger")
    views = [topics.views(a) for a in policy.enforcers]
    return [
        *_topic(user, READ, topics.listing_authors(policy.issuers)),
        *_topic(user, WRITE, [topics.listings(BACKBONE), topics.ledger, *views, topics.rejected]),
        # Faust: its group is the app id, its changelog and assignor topics start with it.
        Grant(f"User:{user}", GROUP, user, LITERAL, READ),
        Grant(f"User:{user}", TOPIC, f"{user}-", PREFIXED, ALL),
    ]


def _reconciler(topics: Topics, enforcers: list[str], ns: str) -> list[Grant]:
    user = principal_name(ns, "reconciler")
    views = [topics.views(a) for a in enforcers]
    reports = [*topics.all_copies_applied(enforcers), *topics.all_copies_digests(enforcers)]
    return [
        *_topic(user, READ, [topics.ledger, *views, *reports, topics.findings]),
        *_topic(user, WRITE, [topics.findings, *views, topics.rejected]),
    ]


def _audit(topics: Topics, policy: Policy, ns: str) -> list[Grant]:
    every = [spec.name for spec in topics.specs(policy.issuers, policy.enforcers)]
    return _topic(principal_name(ns, "audit"), READ, every)
