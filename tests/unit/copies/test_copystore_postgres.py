"""What only the PostgreSQL adapter does: COPY into session staging tables, merged by one statement."""

from __future__ import annotations

from services.core.copystore import open_store
from services.core.copystore.postgres import PostgresCopyStore
from tests.unit.copies.changes import AGENCY

UPSERT = (
    "INSERT INTO copy_positions (view_partition, next_offset) VALUES (?, ?) ON CONFLICT (view_partition) "
    "DO UPDATE SET next_offset = excluded.next_offset"
)


def test_two_merges_into_one_table_in_one_transaction_each_merge_only_their_own_rows(
    pg_database: str,
) -> None:
    """The commit empties a staging table; a second merge before it must not merge the first's rows
    again (here PostgreSQL would refuse to update a row twice in one statement)."""
    store = open_store(pg_database, AGENCY)
    assert isinstance(store, PostgresCopyStore)
    try:
        with store._write() as cur:
            cur.executemany(UPSERT, [(0, 5), (1, 7)])
            cur.executemany(UPSERT, [(0, 9)])
        with store._write() as cur:  # the next transaction's staging table starts empty
            cur.executemany(UPSERT, [(2, 1)])
        assert store.positions() == {0: 9, 1: 7, 2: 1}
    finally:
        store.close()
