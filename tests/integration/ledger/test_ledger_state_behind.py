"""The ledger's tables are never ahead of the decisions the broker confirmed (README, Known limits).

A listing's v1 and v2 arrive in one batch; the broker refuses every `ledger` record (the topic's
`max.message.bytes` is set below a listing state's size), so neither decision is ever confirmed and
the worker stops. Written at once, as Faust writes a table, its RocksDB and the changelog would
already hold v2: the worker restarted on its own data, or another taking the partition over from the
changelog, would read v1 again as a duplicate and re-state only v2, and v1's decision would never
reach `ledger`. Here neither the store nor the changelog holds anything of the listing after the
crash, and once the broker takes the records again both versions are decided, each once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from faust.stores.rocksdb import RocksDBOptions

from services.core.connection import KafkaConnection
from services.core.events import ListingState, Rejected
from services.core.partitioner import partition_of
from services.core.settings import KafkaSettings
from services.ledger.layout import TABLES, changelog
from services.ledger.worker import EXIT_HANDLER_FAILED
from tests.integration.ledger.harness import PARTITIONS, Backbone, wait_for
from tests.integration.ledger.test_ledger_faults import OFFSET_KEY, committed, exited, set_max_message_bytes
from tests.support.backbones import running_backbone

TIMEOUT = 90.0
LISTING = "S-1"


@pytest.fixture
def backbone(kafka_admin: KafkaConnection, tmp_path: Path) -> Iterator[Backbone]:
    with running_backbone(kafka_admin, tmp_path) as running:
        yield running


def crashed_before_any_decision(backbone: Backbone) -> None:
    """v1 and v2 of `LISTING` published, a worker (RocksDB, data in `<folder>/ledger`) started that
    cannot write `ledger`: it must stop, with nothing of the listing in its store or the changelog."""
    set_max_message_bytes(backbone.connection, backbone.topics.ledger, 256)
    book = backbone.book()
    backbone.publish([book.issue(LISTING), book.correct(LISTING, legal_basis="corrected in the same batch")])
    process: subprocess.Popen[bytes] = backbone.start_ledger(store="rocksdb://")
    assert exited(process, TIMEOUT) == EXIT_HANDLER_FAILED
    backbone.processes.pop("ledger")
    assert backbone.count(backbone.topics.ledger) == 0

    kafka = KafkaSettings.of(backbone.connection, namespace=backbone.namespace)
    for table in TABLES:
        assert backbone.count(changelog(kafka, table)) == 0, f"{table}: a changelog record ahead"
        for path in (backbone.folder / "ledger" / "v1" / "tables").glob(f"{table}-*.db"):
            db = RocksDBOptions().open(path)
            try:
                ahead = [k for k in db.keys() if k != OFFSET_KEY]  # noqa: SIM118 (a RocksDB, not a dict)
            finally:
                db.close()
            assert ahead == [], f"{path.name} holds {ahead[:3]}, decided but never confirmed"
    partition = partition_of(LISTING.encode(), PARTITIONS)
    source = backbone.topics.listings("court")
    assert committed(backbone, source, partition) == 0
    set_max_message_bytes(backbone.connection, backbone.topics.ledger, 1048588)


def both_versions_decided(backbone: Backbone) -> None:
    def decided() -> list[tuple[str, int]] | None:
        backbone.assert_alive()
        states = [e for e in backbone.read(backbone.topics.ledger) if isinstance(e, ListingState)]
        versions = sorted({(s.envelope.listing_id, s.envelope.version) for s in states})
        return versions if len(versions) >= 2 else None

    assert wait_for("both versions decided", decided, TIMEOUT, every=0.5) == [(LISTING, 1), (LISTING, 2)]
    assert [e for e in backbone.read(backbone.topics.rejected) if isinstance(e, Rejected)] == []


def test_a_worker_restarted_on_its_own_store_decides_the_version_it_had_not_confirmed(
    backbone: Backbone,
) -> None:
    crashed_before_any_decision(backbone)
    backbone.start_ledger(store="rocksdb://")  # the same data directory and member id
    both_versions_decided(backbone)


def test_a_worker_taking_over_from_the_changelog_decides_the_version_not_confirmed(
    backbone: Backbone,
) -> None:
    crashed_before_any_decision(backbone)
    backbone.start_ledger(store="rocksdb://", name="ledger-b")  # a data directory of its own
    both_versions_decided(backbone)
