"""The ledger's partition-count check, on counts as the broker reports them."""

from __future__ import annotations

from pathlib import Path

from services.core.settings import KafkaSettings
from services.ledger.layout import co_partitioned, mismatched
from tests.support.factory import policy_with_keys


def test_agreeing_counts_pass_and_any_other_count_is_named() -> None:
    assert mismatched({"t.listings.court": 3, "t.ledger": 3}, 3) is None
    problem = mismatched({"t.listings.court": 6, "t.ledger": 3, "t.views.railway": 1}, 3)
    assert problem is not None
    assert "expects 3 partitions" in problem
    assert "t.listings.court has 6, t.views.railway has 1" in problem


def test_the_check_covers_listing_topics_tables_gaps_ledger_and_views(tmp_path: Path) -> None:
    policy, _ = policy_with_keys(tmp_path)
    names = co_partitioned(KafkaSettings(namespace="t.", bootstrap_servers="x:1"), policy)
    assert {"t.listings.court", "t.listings.backbone", "t.ledger", "t.views.railway"} <= set(names)
    changelogs = {f"t.ledger-{table}-changelog" for table in ("listings", "held", "expiring")}
    assert changelogs | {"t.ledger-gaps"} <= set(names)
