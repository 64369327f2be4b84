"""`CopyStore.restore`, on every adapter: a backup of the rows put back, the sink's bookkeeping kept.

This is how the Luoshan demo restores a copy from an old backup (`services/demo/drill.py`): through
the port, never by table name, so the restore means the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from services.core.copystore import Applied, CopyStore
from tests.unit.copies.changes import by_reconciler, delete, row, upsert


def test_a_restored_backup_brings_back_its_rows_and_their_digest_and_keeps_the_positions(
    store: CopyStore,
) -> None:
    store.apply(upsert(row("L-1")), 0, 0)
    store.apply(upsert(row("L-2")), 1, 0)
    backup = list(store.rows())
    store.apply(delete("L-1", 2), 0, 1)  # the revocation the backup does not know
    store.apply(upsert(row("L-2", 2, case_ref="corrected")), 1, 1)
    store.apply(upsert(row("L-3")), 2, 0)
    positions = store.positions()

    store.restore(backup)

    assert list(store.rows()) == [row("L-1"), row("L-2")]
    assert store.digest() == store.rescan_digest()  # the running digest is the restored rows'
    assert store.positions() == positions and store.delivered_version("L-1") == 2
    assert store.apply(delete("L-1", 2), 0, 1) is Applied.REPEATED  # the sink will not undo it by itself
    assert store.apply(by_reconciler(delete("L-1", 2)), 0, 2) is Applied.APPLIED  # a repair does
    assert [r.listing_id for r in store.rows()] == ["L-2"]


def test_restoring_nothing_empties_the_copy(store: CopyStore) -> None:
    store.apply(upsert(row("L-1")), 0, 0)
    store.restore([])
    assert list(store.rows()) == [] and store.digest() == store.rescan_digest()
    assert store.positions() == {0: 1}
