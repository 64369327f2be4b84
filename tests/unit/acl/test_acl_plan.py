"""The ACLs derived from the policy: each agency confined to its own topics, each service to its job."""

from __future__ import annotations

from services.acl.plan import (
    ALL,
    GROUP,
    LITERAL,
    PREFIXED,
    READ,
    TOPIC,
    TRANSACTIONAL_ID,
    WRITE,
    Grant,
    plan,
    principals,
)
from services.core.policy import load_policy
from services.core.settings import KafkaSettings
from services.core.topics import Topics
from services.ledger.layout import app_id, co_partitioned, gaps_topic

NS = "t1."
POLICY = load_policy()
TOPICS = Topics(NS)
GRANTS = plan(POLICY, TOPICS)


def topics_of(user: str, operation: str) -> set[str]:
    return {g.name for g in GRANTS if g.principal == f"User:{NS}{user}" and g.resource == TOPIC
            and g.operation == operation}  # fmt: skip


def test_an_issuing_agency_writes_only_its_own_listing_topic_and_reads_the_ledger_and_verdicts() -> None:
    assert topics_of("court", WRITE) >= {TOPICS.listings("court")}
    assert {t for t in topics_of("court", WRITE) if ".listings." in f".{t}"} == {TOPICS.listings("court")}
    assert topics_of("tax-bureau", WRITE) == {TOPICS.listings("tax-bureau")}  # issues, enforces nothing
    assert topics_of("tax-bureau", READ) == {TOPICS.ledger, TOPICS.rejected}


def test_no_agency_reads_another_agencys_listing_topic_or_view() -> None:
    for agency in POLICY.issuers + POLICY.enforcers:
        if agency == "backbone":
            continue
        reads = topics_of(agency, READ)
        assert not {t for t in reads if "listings." in t}, agency
        assert {t for t in reads if "views." in t} <= {TOPICS.views(agency)}, agency


def test_a_copy_reports_only_on_its_own_acknowledgement_and_digest_topics() -> None:
    for agency in POLICY.enforcers:
        writes = topics_of(agency, WRITE)
        reports = {t for t in writes if "copies." in t}
        assert reports == {TOPICS.copies_applied(agency), TOPICS.copies_digests(agency)}, agency
        assert TOPICS.views(agency) in topics_of(agency, READ)


def test_the_ledger_reads_every_listing_topic_and_writes_views_ledger_and_verdicts() -> None:
    assert topics_of("ledger", READ) == set(TOPICS.listing_authors(POLICY.issuers))
    assert topics_of("ledger", WRITE) == {
        TOPICS.listings("backbone"),
        TOPICS.ledger,
        TOPICS.rejected,
        *map(TOPICS.views, POLICY.enforcers),
    }
    faust = [
        g
        for g in GRANTS
        if g.principal == f"User:{NS}ledger" and g.pattern == PREFIXED and g.resource == TOPIC
    ]
    assert [g.name for g in faust] == [f"{NS}ledger-"]  # its changelogs, nothing else by prefix


def test_the_ledger_may_use_every_topic_it_creates_or_checks_and_its_faust_group() -> None:
    """Its gaps topic and changelogs (created by the ledger itself), and every topic whose
    partition count it checks at start: a topic it may not describe would go unchecked."""
    kafka = KafkaSettings(namespace=NS, bootstrap_servers="x:1")
    mine = [g for g in GRANTS if g.principal == f"User:{NS}ledger"]

    def allowed(topic: str) -> bool:
        return any(
            g.resource == TOPIC
            and (g.name == topic if g.pattern == LITERAL else topic.startswith(g.name))
            and (g.pattern == LITERAL or g.operation == ALL)
            for g in mine
        )

    assert allowed(gaps_topic(kafka))
    assert [t for t in co_partitioned(kafka, POLICY) if not allowed(t)] == []
    assert Grant(f"User:{NS}ledger", GROUP, app_id(kafka), LITERAL, READ) in mine


def test_the_reconciler_writes_findings_and_repairs_and_the_audit_writes_nothing() -> None:
    assert topics_of("reconciler", WRITE) == {
        TOPICS.findings,
        TOPICS.rejected,
        *map(TOPICS.views, POLICY.enforcers),
    }
    assert TOPICS.copies_applied("railway") in topics_of("reconciler", READ)
    assert TOPICS.findings in topics_of("reconciler", READ)  # what it already published, on a restart
    assert not [g for g in GRANTS if g.principal == f"User:{NS}audit" and g.operation != READ
                and g.resource == TOPIC]  # fmt: skip
    every = {spec.name for spec in TOPICS.specs(POLICY.issuers, POLICY.enforcers)}
    assert topics_of("audit", READ) == every


def test_groups_and_transactional_ids_are_prefixed_by_their_own_principal() -> None:
    for user in principals(POLICY, NS):
        own = {(g.resource, g.name) for g in GRANTS if g.principal == f"User:{user}" and g.pattern == PREFIXED
               and g.resource in (GROUP, TRANSACTIONAL_ID)}  # fmt: skip
        assert own == {(GROUP, f"{user}."), (TRANSACTIONAL_ID, f"{user}.")}, user


def test_the_plan_is_sorted_without_duplicates_and_prints_one_line_per_grant() -> None:
    assert sorted(set(GRANTS)) == GRANTS
    line = Grant("User:t1.court", TOPIC, "t1.listings.court", "LITERAL", WRITE).line()
    assert line.split() == ["User:t1.court", "WRITE", "topic", "t1.listings.court"]
    assert plan(POLICY, TOPICS) == GRANTS  # derived, not stateful
