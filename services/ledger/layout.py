"""The ledger refuses to start on topics whose partition counts disagree.

It keeps each listing's state in the table partition numbered like the listing's
partition, and sends its views and its `ledger` records to the partition the same key
hashes to. All of that holds only if every listing topic, every table changelog, the
internal gaps topic, `ledger` and every `views.*` have the same number of partitions.
`create_topics` leaves an existing topic as it is, so nothing else would notice.
"""

from __future__ import annotations

import time

from services.core.errors import ConfigurationError
from services.core.kafka import create_topics, partition_counts
from services.core.policy import Policy
from services.core.settings import KafkaSettings
from services.core.topics import TopicSpec

GAPS_CONFIG = {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)}
CHANGELOG_CONFIG = {"cleanup.policy": "compact"}  # as Faust makes a table's changelog

TABLES = ("listings", "held", "expiring")


def app_id(kafka: KafkaSettings) -> str:
    return f"{kafka.namespace}ledger"


def gaps_topic(kafka: KafkaSettings) -> str:
    return f"{app_id(kafka)}-gaps"


def co_partitioned(kafka: KafkaSettings, policy: Policy) -> list[str]:
    """Every topic whose partitions must line up with the ledger's tables."""
    topics = kafka.topics
    changelogs = [changelog(kafka, table) for table in TABLES]
    return [
        *topics.listing_authors(policy.issuers),
        *changelogs,
        gaps_topic(kafka),
        topics.ledger,
        *(topics.views(agency) for agency in sorted(policy.enforcers)),
    ]


def mismatched(counts: dict[str, int], expected: int) -> str | None:
    """What is wrong with these partition counts, said so an operator can fix it; None if nothing."""
    wrong = {name: n for name, n in counts.items() if n != expected}
    if not wrong:
        return None
    listed = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
    return (
        f"partition counts disagree: the ledger expects {expected} partitions (ACCORD_PARTITIONS) "
        f"on every listing topic, its tables, ledger and views.*, but {listed}. "
        "A listing's events, state and views would land in different partitions; "
        "recreate those topics with the same count, or set ACCORD_PARTITIONS to match."
    )


def prepare(kafka: KafkaSettings, policy: Policy, wait_s: float = 30.0) -> None:
    """Create the internal gaps topic and the tables' changelogs, wait until the cluster shows
    their partitions, then check every partition count, before Faust starts.

    Created here, not by Faust: a topic Faust creates after its consumer subscribed gets no
    partitions assigned until the next metadata refresh, minutes later; and a changelog Faust
    creates on a fresh broker may still show 0 partitions when Faust compares it with its source
    (`PartitionsMismatch`: the worker would stop at start)."""
    own = [
        TopicSpec(gaps_topic(kafka), "listing_id", ("give-up request",), GAPS_CONFIG),
        *(TopicSpec(changelog(kafka, t), "listing_id", ("table change",), CHANGELOG_CONFIG) for t in TABLES),
    ]
    create_topics(kafka.connection, own, kafka.partitions, kafka.replication_factor)
    _await_partitions(kafka, [spec.name for spec in own], wait_s)
    check_partitions(kafka, policy)


def changelog(kafka: KafkaSettings, table: str) -> str:
    return f"{app_id(kafka)}-{table}-changelog"


def _await_partitions(kafka: KafkaSettings, names: list[str], wait_s: float) -> None:
    """Until the cluster's metadata shows every topic of `names` with its partitions."""
    deadline = time.monotonic() + wait_s
    while missing := [n for n in names if not partition_counts(kafka.connection, [n]).get(n)]:
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"topics {missing} show no partitions in the cluster's metadata after {wait_s:.0f} s: "
                "may the ledger's principal create and describe them?"
            )
        time.sleep(0.5)


def check_partitions(kafka: KafkaSettings, policy: Policy) -> None:
    """Raise `ConfigurationError` unless every existing co-partitioned topic has the same count."""
    counts = partition_counts(kafka.connection, co_partitioned(kafka, policy))
    problem = mismatched(counts, kafka.partitions)
    if problem is not None:
        raise ConfigurationError(problem)
