"""The state `bench_restart.py` generates is what the services read: the publisher's `LedgerBook` and the
reconciler's `ExpectedViews` open it as N listings, with the digest the domain computes for them.

The benchmark writes those files straight (`benchmarks/generated_state.py`), not through the services, so
a schema or a digest that drifted from the services' would make it measure something else.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from benchmarks.generated_state import AGENCY, STALE, acked, build, bulk, files, listing_id, row_hash
from services.core.digest import DEFAULT_BUCKETS, Digest, bucket_of, leaf
from services.core.listing import evolve
from services.core.serde import encode
from services.core.snapshot import Snapshot
from services.core.topics import Topics
from services.publisher.state import LedgerBook
from services.reconciler.acks import AckTracker, Sla
from services.reconciler.expected import ExpectedViews
from services.reconciler.kept import SCHEMA, TABLES
from tests.support.factory import Ledgerbook, policy_with_keys

N = 3000
TOPICS = Topics("g.")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    _, keystore = policy_with_keys(tmp_path_factory.mktemp("keys"))
    return encode(evolve(None, Ledgerbook(keystore).issue("template")))


def _built(folder: Path, raw: bytes, only: int | None = None) -> Path:
    for sub in ("publisher", "reconciler"):
        (folder / sub).mkdir(parents=True)
    build(folder, N, raw, "cluster-1", TOPICS, only)
    return folder


def _expected_digest() -> Digest:
    return Digest.of((listing_id(i), leaf(listing_id(i), 1, "active", row_hash(i))) for i in range(N))


def test_the_publisher_reads_n_listings_of_the_real_state(tmp_path: Path, template: bytes) -> None:
    book = LedgerBook({}, files(_built(tmp_path, template), TOPICS)[0])
    try:
        assert len(book) == N
        state = book.state(listing_id(N - 1))
        assert state is not None and encode(state) == template
        assert book.admitted(listing_id(17), f"e-{listing_id(17)}")
        assert book.snapshot.positions() == {(TOPICS.ledger, 0): 0}
        assert book.snapshot.meta("cluster") == "cluster-1"
    finally:
        book.close()


def test_the_reconciler_reads_the_digest_the_domain_computes(tmp_path: Path, template: bytes) -> None:
    folder = _built(tmp_path, template)
    policy, _ = policy_with_keys(tmp_path / "keys")
    expected = ExpectedViews(policy, [AGENCY], snapshot=Snapshot(files(folder, TOPICS)[1], SCHEMA, TABLES))
    try:
        assert len(expected) == N
        assert expected.digest(AGENCY).buckets == _expected_digest().buckets
        bucket = bucket_of(STALE, DEFAULT_BUCKETS)
        held = expected.leaves(AGENCY, bucket, DEFAULT_BUCKETS)
        assert held[STALE] == leaf(STALE, 1, "active", row_hash(int(STALE[2:])))
        assert len(held) == sum(bucket_of(listing_id(i)) == bucket for i in range(N))
        assert expected.snapshot.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        expected.close()
    copy = sqlite3.connect(folder / "copy.sqlite3")
    statuses = dict(copy.execute("SELECT status, count(*) FROM rows GROUP BY status"))
    copy.close()
    assert statuses == {"active": N - 1, "revoked": 1}


def test_one_bucket_alone_holds_the_same_leaves(tmp_path: Path, template: bytes) -> None:
    bucket = bucket_of(STALE, DEFAULT_BUCKETS)
    folder = _built(tmp_path, template, only=bucket)
    policy, _ = policy_with_keys(tmp_path / "keys")
    expected = ExpectedViews(policy, [AGENCY], snapshot=Snapshot(files(folder, TOPICS)[1], SCHEMA, TABLES))
    try:
        assert expected.digest(AGENCY).buckets[bucket] == _expected_digest().buckets[bucket]
        assert set(expected.leaves(AGENCY, bucket, DEFAULT_BUCKETS)) == {
            listing_id(i) for i in range(N) if bucket_of(listing_id(i)) == bucket
        }
    finally:
        expected.close()


def test_generated_acknowledgements_are_read_as_acks(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.sqlite3"
    Snapshot(path, SCHEMA, TABLES).close()
    with bulk(path) as db:
        acked(db, AGENCY, N, 1_000_000)
    snapshot = Snapshot(path, SCHEMA, TABLES)
    try:
        tracker = AckTracker(Sla(timedelta(seconds=5), timedelta(seconds=1)), snapshot.db)
        assert tracker.acked(AGENCY, listing_id(N - 1)) == 1
        assert tracker.announced(AGENCY, listing_id(N - 1)) == 1
        assert tracker.acked(AGENCY, listing_id(N)) == 0
    finally:
        snapshot.close()
