"""One behaviour suite for every `CopyStore` adapter: a SQLite file and a PostgreSQL database.

What a copy must do whatever holds it: apply each change once, with its position, in
one transaction; keep an incremental digest equal to a rescan of its rows; show rows
edited behind its back in a rescan and in the bucket's leaves, but not in the digest
`apply` keeps; refuse another agency's changes; keep acknowledgements until sent.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest

from services.core.copystore import Applied, Change, CopyStore, Holding, Refusal, StoreError, open_store
from services.core.digest import Digest, bucket_of, leaf
from services.core.errors import ConfigurationError, ContractError
from services.core.views import ViewRow
from tests.unit.copies.changes import AGENCY, by_reconciler, delete, row, upsert


def execute(url: str, sql: str) -> None:
    """Change the copy's database by hand, as an operator (or an intruder) could."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.execute(sql)
    else:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(sql.encode())


def expected_digest(rows: list[ViewRow]) -> Digest:
    return Digest.of((r.listing_id, leaf(r.listing_id, r.version, r.status, r.row_hash())) for r in rows)


def test_an_upsert_is_stored_exactly_as_the_view_row(store: CopyStore) -> None:
    wanted = row("L-1", exempt=True)
    assert store.apply(upsert(wanted), partition=0, offset=0) is Applied.APPLIED
    assert store.row("L-1") == wanted
    assert list(store.rows()) == [wanted]
    assert store.rows_for_subject("s-1") == ([wanted], [])
    assert store.rows_for_subject("s-other") == ([], [])
    assert store.row("L-missing") is None


def test_each_offset_is_applied_once_and_positions_advance_per_partition(store: CopyStore) -> None:
    assert store.apply(upsert(row("L-1", 1)), 0, 5) is Applied.APPLIED
    assert store.apply(upsert(row("L-2", 1)), 2, 0) is Applied.APPLIED
    assert store.positions() == {0: 6, 2: 1}
    assert store.apply(upsert(row("L-1", 2, case_ref="changed")), 0, 5) is Applied.REPEATED
    assert store.apply(upsert(row("L-1", 2, case_ref="changed")), 0, 4) is Applied.REPEATED
    assert store.row("L-1") == row("L-1", 1)
    assert store.positions() == {0: 6, 2: 1}


def test_a_repair_applies_the_current_version_again_the_ledger_s_same_version_once(
    store: CopyStore,
) -> None:
    store.apply(upsert(row("L-1", 3)), 0, 0, ack=lambda _: b"first")
    assert store.apply(upsert(row("L-1", 3)), 0, 1, ack=lambda _: b"again") is Applied.REPEATED
    assert store.unsent_acks() == [(0, 0, b"first")]  # delivered twice, acknowledged once
    assert store.positions() == {0: 2}
    assert store.apply(by_reconciler(upsert(row("L-1", 3, case_ref="repaired"))), 0, 2) is Applied.APPLIED
    assert store.row("L-1") == row("L-1", 3, case_ref="repaired")


def test_a_delete_removes_the_row_and_a_delete_of_nothing_only_advances(store: CopyStore) -> None:
    store.apply(upsert(row("L-1")), 0, 0)
    assert store.apply(delete("L-1", 2), 0, 1) is Applied.APPLIED
    assert store.row("L-1") is None
    assert store.apply(delete("L-unknown", 2), 1, 0) is Applied.APPLIED
    assert store.positions() == {0: 2, 1: 1}
    assert store.digest().rows == 0
    assert store.digest().root() == Digest().root()


def test_the_incremental_digest_equals_a_rescan_and_the_expected_view(store: CopyStore) -> None:
    chooser = random.Random(7)
    expected: dict[str, ViewRow] = {}
    versions: dict[str, int] = {}
    for offset in range(120):
        listing = f"L-{chooser.randrange(25)}"
        version = versions[listing] = versions.get(listing, 0) + 1
        if listing in expected and chooser.random() < 0.3:
            store.apply(delete(listing, version), offset % 3, offset)
            del expected[listing]
        else:
            expected[listing] = row(listing, version, case_ref=f"c{offset}", exempt=chooser.random() < 0.2)
            store.apply(upsert(expected[listing]), offset % 3, offset)
    want = expected_digest(list(expected.values()))
    assert store.digest().hex_buckets() == want.hex_buckets()
    assert store.digest().rows == len(expected)
    assert store.rescan_digest().hex_buckets() == want.hex_buckets()
    assert list(store.rows()) == [expected[k] for k in sorted(expected)]


def test_a_row_edited_by_hand_shows_in_the_rescan_and_leaves_and_a_repair_fixes_it(
    store: CopyStore, url: str
) -> None:
    store.apply(upsert(row("L-1", 2)), 0, 0)
    store.apply(upsert(row("L-2", 1)), 0, 1)
    honest = store.digest()
    execute(url, "UPDATE copy_rows SET fields = '{\"case_ref\":\"forged\"}' WHERE listing_id = 'L-1'")

    assert store.digest().hex_buckets() == honest.hex_buckets()
    bucket = bucket_of("L-1")
    assert store.rescan_digest().differing_buckets(honest.hex_buckets()) == [bucket]
    version, status, row_hash = store.bucket_leaves(bucket)["L-1"]
    assert (version, status) == (2, "active") and row_hash != row("L-1", 2).row_hash()

    assert store.apply(by_reconciler(upsert(row("L-1", 2))), 0, 2) is Applied.APPLIED  # the repair
    assert store.rescan_digest().hex_buckets() == honest.hex_buckets()
    assert store.digest().hex_buckets() == honest.hex_buckets()


def test_rows_deleted_or_added_by_hand_show_in_the_rescan(store: CopyStore, url: str) -> None:
    store.apply(upsert(row("L-1")), 0, 0)
    store.apply(upsert(row("L-2")), 0, 1)
    execute(url, "DELETE FROM copy_rows WHERE listing_id = 'L-2'")
    assert store.rescan_digest().rows == 1
    assert store.bucket_leaves(bucket_of("L-2")) == {}
    assert store.digest().rows == 2


def test_bucket_leaves_read_one_bucket_in_any_split(store: CopyStore) -> None:
    rows = [row(f"L-{i}", i % 4 + 1) for i in range(40)]
    for offset, each in enumerate(rows):
        store.apply(upsert(each), 0, offset)
    for size in (256, 16, 1):
        for bucket in {bucket_of(r.listing_id, size) for r in rows}:
            want = {
                r.listing_id: (r.version, r.status, r.row_hash())
                for r in rows
                if bucket_of(r.listing_id, size) == bucket
            }
            assert store.bucket_leaves(bucket, size) == want


def test_a_change_for_another_agency_is_refused_and_changes_nothing(store: CopyStore) -> None:
    with pytest.raises(ContractError, match="railway"):
        store.apply(upsert(row("L-1"), agency="railway"), 0, 0)
    assert store.positions() == {}
    assert list(store.rows()) == []


def test_an_upsert_of_a_row_no_copy_may_hold_is_refused_and_changes_nothing(store: CopyStore) -> None:
    """The row is no longer validated again as a `ViewRow`: its one narrower rule is checked here."""
    revoked = upsert(row("L-1")).model_copy(update={"status": "revoked"})
    with pytest.raises(ContractError, match="an upsert with status 'revoked'"):
        store.take([Change(upsert(row("L-2")), 0, 0), Change(revoked, 0, 1)])
    assert store.positions() == {}
    assert list(store.rows()) == []


def test_a_store_belongs_to_one_agency(url: str) -> None:
    open_store(url, AGENCY).close()
    with pytest.raises(ConfigurationError, match=f"holds the copy of {AGENCY}"):
        open_store(url, "railway")


def test_everything_survives_closing_and_reopening(url: str) -> None:
    first = open_store(url, AGENCY)
    first.apply(upsert(row("L-1")), 1, 9, ack=lambda _: b"ack-9")
    digest, applied_at = first.digest(), first.last_applied_at()
    first.close()
    again = open_store(url, AGENCY)
    try:
        assert again.positions() == {1: 10}
        assert again.row("L-1") == row("L-1")
        assert again.digest().hex_buckets() == digest.hex_buckets()
        assert again.last_applied_at() == applied_at
        assert again.unsent_acks() == [(1, 9, b"ack-9")]
    finally:
        again.close()


def test_acknowledgements_wait_in_the_store_until_sent(store: CopyStore) -> None:
    store.apply(upsert(row("L-1")), 0, 0, ack=lambda _: b"a0")
    store.apply(upsert(row("L-2")), 1, 0, ack=lambda _: b"a1")
    store.apply(upsert(row("L-3")), 0, 1)
    assert store.unsent_acks() == [(0, 0, b"a0"), (1, 0, b"a1")]
    store.acks_sent([(0, 0)])
    assert store.unsent_acks() == [(1, 0, b"a1")]


def test_a_failed_apply_writes_nothing(store: CopyStore, url: str) -> None:
    store.apply(upsert(row("L-1")), 0, 0)
    digest = store.digest()
    execute(url, "DROP TABLE copy_outbox")
    with pytest.raises(StoreError, match="copy_outbox"):
        store.apply(upsert(row("L-2")), 0, 1, ack=lambda _: b"lost")
    assert store.positions() == {0: 1}
    assert store.row("L-2") is None
    assert store.digest().hex_buckets() == digest.hex_buckets()


def test_last_applied_at_is_the_time_of_the_latest_apply(store: CopyStore) -> None:
    assert store.last_applied_at() is None
    before = datetime.now(UTC)
    store.apply(upsert(row("L-1")), 0, 0)
    applied = store.last_applied_at()
    assert applied is not None and before <= applied <= datetime.now(UTC)


def test_a_row_no_longer_valid_is_reported_not_returned(store: CopyStore, url: str) -> None:
    store.apply(upsert(row("L-1")), 0, 0)
    execute(url, "UPDATE copy_rows SET status = 'revoked' WHERE listing_id = 'L-1'")
    with pytest.raises(StoreError, match="L-1"):
        store.row("L-1")
    assert store.bucket_leaves(bucket_of("L-1"))["L-1"][1] == "revoked"


def test_an_unknown_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        open_store("mysql://db", AGENCY)


def test_a_skipped_message_is_consumed_without_touching_rows(store: CopyStore) -> None:
    store.apply(upsert(row("L-1")), 0, 0)
    applied_at = store.last_applied_at()
    assert store.skip(0, 1, ack=b"refused-1")
    assert not store.skip(0, 1)
    assert store.unsent_acks() == [(0, 1, b"refused-1")]
    assert store.apply(upsert(row("L-1", 2)), 0, 1) is Applied.REPEATED
    assert store.positions() == {0: 2}
    assert store.row("L-1") == row("L-1")
    assert store.last_applied_at() == applied_at


def test_the_newest_version_the_ledger_delivered_is_kept_apart_from_the_rows(
    store: CopyStore, url: str
) -> None:
    assert store.delivered_version("L-1") == 0
    store.apply(upsert(row("L-1", 2)), 0, 0)
    assert store.apply(by_reconciler(upsert(row("L-1", 1))), 0, 1) is Applied.OVERTAKEN
    assert store.delivered_version("L-1") == 2
    store.apply(delete("L-1", 3), 0, 2)
    assert store.apply(upsert(row("L-1", 2)), 0, 3) is Applied.OVERTAKEN  # never lowers it
    assert store.delivered_version("L-1") == 3
    execute(url, "DELETE FROM copy_rows")  # a restore or a hand edit of the rows leaves it alone
    assert store.delivered_version("L-1") == 3


def hand_insert(url: str, listing_id: str, bucket: str, leaf_sql: str = "leaf") -> None:
    """A row inserted by hand, copied from L-1 the way an administrator would, bucket given by `bucket`."""
    cols = "version, status, subject_ref, measures, fields, effective_from, expires_at, exemptions"
    source = "FROM copy_rows WHERE listing_id = 'L-1'"
    execute(url, f"INSERT INTO copy_rows (listing_id, {cols}, bucket, leaf) "
                 f"SELECT '{listing_id}', {cols}, {bucket}, {leaf_sql} {source}")  # fmt: skip


@pytest.mark.parametrize(
    "bucket, leaf_sql", [("bucket", "leaf"), ("(bucket + 7) % 256", "leaf"), ("NULL", "NULL")],
    ids=["copied bucket", "wrong bucket", "no bucket"],
)  # fmt: skip
def test_a_row_inserted_by_hand_is_found_where_its_listing_id_puts_it(
    store: CopyStore, url: str, bucket: str, leaf_sql: str
) -> None:
    store.apply(upsert(row("L-1")), 0, 0)
    intruder = next(f"X-{i}" for i in range(1000) if bucket_of(f"X-{i}") != bucket_of("L-1"))
    hand_insert(url, intruder, bucket, leaf_sql)

    where = bucket_of(intruder)
    assert store.rescan_digest().differing_buckets(store.digest().hex_buckets()) == [where]
    assert intruder not in store.bucket_leaves(bucket_of("L-1"))  # not where its stored bucket says
    assert set(store.misplaced()) == {intruder}
    assert store.rows_for_subject("s-1")[0][1].listing_id == intruder  # and the check sees it

    fixed = store.reindex()
    assert fixed.rows == [intruder] and fixed.buckets == [where]
    assert store.digest().hex_buckets() == store.rescan_digest().hex_buckets()
    assert intruder in store.bucket_leaves(where) and store.misplaced() == {}
    assert store.reindex().rows == [] and store.reindex().buckets == []


def test_repairing_a_row_inserted_with_a_copied_leaf_leaves_a_digest_that_reindex_rebuilds(
    store: CopyStore, url: str
) -> None:
    store.apply(upsert(row("L-1")), 0, 0)
    honest = store.digest().hex_buckets()
    intruder = next(f"X-{i}" for i in range(1000) if bucket_of(f"X-{i}") == bucket_of("L-1"))
    hand_insert(url, intruder, "bucket", "leaf")
    assert store.apply(by_reconciler(delete(intruder, 0)), 0, 1) is Applied.APPLIED
    assert store.rescan_digest().hex_buckets() == honest
    assert store.digest().hex_buckets() != honest  # it subtracted a leaf it never added
    assert store.reindex().buckets == [bucket_of("L-1")]
    assert store.digest().hex_buckets() == honest


def test_edits_and_deletions_by_hand_are_folded_into_the_digest_by_reindex(
    store: CopyStore, url: str
) -> None:
    for offset, listing in enumerate(["L-1", "L-2", "L-3"]):
        store.apply(upsert(row(listing)), 0, offset)
    execute(url, "DELETE FROM copy_rows WHERE listing_id = 'L-2'")
    execute(url, "UPDATE copy_rows SET measures = '[]' WHERE listing_id = 'L-3'")
    fixed = store.reindex()
    assert fixed.rows == ["L-3"]  # its leaf; L-2 has no row left to fix, only its bucket
    assert sorted(fixed.buckets) == sorted({bucket_of("L-2"), bucket_of("L-3")})
    assert store.digest().hex_buckets() == store.rescan_digest().hex_buckets()
    assert store.digest().rows == 2


def test_an_older_change_is_never_applied_and_is_acknowledged_with_what_the_copy_holds(
    store: CopyStore,
) -> None:
    seen: list[Holding] = []

    def ack(held: Holding) -> bytes:
        seen.append(held)
        return b"ack"

    store.apply(upsert(row("L-1", 2)), 0, 0)
    store.apply(delete("L-1", 3), 0, 1)  # revoked
    assert store.apply(by_reconciler(upsert(row("L-1", 2))), 0, 2, ack=ack) is Applied.OVERTAKEN
    assert store.apply(upsert(row("L-1", 1)), 0, 3, ack=ack) is Applied.OVERTAKEN  # a replayed old change
    assert store.row("L-1") is None and store.positions() == {0: 4}
    assert seen == [Holding(3, ""), Holding(3, "")]  # no row, at the version of the delete
    assert [offset for _, offset, _ in store.unsent_acks()] == [2, 3]
    store.apply(upsert(row("L-2", 4)), 1, 0)
    assert store.apply(by_reconciler(upsert(row("L-2", 3))), 1, 1, ack=ack) is Applied.OVERTAKEN
    assert seen[-1] == Holding(4, row("L-2", 4).row_hash()) and store.row("L-2") == row("L-2", 4)


def test_a_damaged_row_is_answered_as_damaged_recorded_and_forgotten_once_repaired(
    store: CopyStore, url: str
) -> None:
    store.apply(upsert(row("L-1")), 0, 0)
    store.apply(upsert(row("L-2")), 0, 1)
    execute(url, "UPDATE copy_rows SET status = 'revoked' WHERE listing_id = 'L-1'")
    rows, damaged = store.rows_for_subject("s-1")
    assert rows == [row("L-2")] and [d.listing_id for d in damaged] == ["L-1"]
    assert "not a valid view row" in damaged[0].reason
    at = datetime(2026, 3, 1, tzinfo=UTC)
    store.record_damage(damaged, at)
    store.record_damage(damaged, at.replace(day=2))  # seen again: the first sighting stays
    assert store.damage() == {"L-1": (damaged[0].reason, at)}
    store.apply(by_reconciler(upsert(row("L-1"))), 0, 2)
    assert store.damage() == {}


def test_a_batch_in_one_transaction_decides_each_message_as_one_at_a_time_would(store: CopyStore) -> None:
    store.apply(upsert(row("L-0")), 0, 0)
    batch: list[Change | Refusal] = [
        Change(upsert(row("L-1")), 0, 1, ack=lambda held: f"1:{held.version}".encode()),
        Change(upsert(row("L-1", 2, case_ref="new")), 0, 2, ack=lambda held: f"2:{held.version}".encode()),
        Refusal(0, 3, ack=b"refused"),
        Change(by_reconciler(upsert(row("L-1"))), 0, 4, ack=lambda held: f"4:{held.version}".encode()),
        Change(upsert(row("L-1", 2, case_ref="new")), 0, 5),  # the ledger's same version again
        Change(delete("L-0", 2), 1, 0),
        Change(upsert(row("L-9")), 0, 0),  # an offset already taken
    ]
    assert store.take(batch) == [Applied.APPLIED, Applied.APPLIED, Applied.SKIPPED, Applied.OVERTAKEN,
                                 Applied.REPEATED, Applied.APPLIED, Applied.REPEATED]  # fmt: skip
    assert list(store.rows()) == [row("L-1", 2, case_ref="new")]
    assert store.positions() == {0: 6, 1: 1}
    assert [ack for _, _, ack in store.unsent_acks()] == [b"1:1", b"2:2", b"refused", b"4:2"]
    assert store.digest().hex_buckets() == store.rescan_digest().hex_buckets() == expected_digest(
        [row("L-1", 2, case_ref="new")]).hex_buckets()  # fmt: skip
    assert store.delivered_version("L-0") == 2 and store.delivered_version("L-1") == 2


def test_a_batch_of_hundreds_of_listings_is_written_whole_as_one_at_a_time_would(store: CopyStore) -> None:
    """More rows than one statement takes (SQLite writes a batch as multi-row statements of at most
    999 parameters; PostgreSQL through COPY): replaced, added and deleted rows, none lost."""
    for i in range(0, 400, 2):
        store.apply(upsert(row(f"L-{i:03d}")), 1, i // 2)

    def acked(i: int) -> Callable[[Holding], bytes]:
        return lambda held: f"{i}:{held.version}".encode()

    batch: list[Change | Refusal] = [
        Change(upsert(row(f"L-{i:03d}", 2, case_ref=f"c{i}")) if i % 3 else delete(f"L-{i:03d}", 2), 0, i,
               ack=acked(i))
        for i in range(400)
    ]  # fmt: skip
    assert store.take(batch) == [Applied.APPLIED] * 400
    expected = [row(f"L-{i:03d}", 2, case_ref=f"c{i}") for i in range(400) if i % 3]
    assert list(store.rows()) == expected
    assert store.digest().hex_buckets() == store.rescan_digest().hex_buckets()
    assert store.digest().hex_buckets() == expected_digest(expected).hex_buckets()
    assert store.positions() == {0: 400, 1: 200}
    assert [ack for p, _, ack in store.unsent_acks() if p == 0] == [f"{i}:2".encode() for i in range(400)]
    assert all(store.delivered_version(f"L-{i:03d}") == 2 for i in range(400))


def test_a_batch_that_fails_part_way_writes_nothing(store: CopyStore) -> None:
    def broken(_: Holding) -> bytes:
        raise RuntimeError("the acknowledgement could not be built")

    with pytest.raises(RuntimeError):
        store.take([Change(upsert(row("L-1")), 0, 0), Change(upsert(row("L-2")), 0, 1, ack=broken)])
    assert list(store.rows()) == [] and store.positions() == {} and store.unsent_acks() == []
    assert store.digest().rows == 0 and store.delivered_version("L-1") == 0


def test_verifying_one_bucket_folds_in_only_that_bucket_s_hand_edits(store: CopyStore, url: str) -> None:
    ids = [f"L-{i}" for i in range(40)]
    store.take([Change(upsert(row(lid)), 0, i) for i, lid in enumerate(ids)])
    edited, other = ids[3], next(lid for lid in ids if bucket_of(lid) != bucket_of(ids[3]))
    for lid in (edited, other):
        execute(url, f"UPDATE copy_rows SET measures = '[]' WHERE listing_id = '{lid}'")
    step = store.verify(bucket_of(edited))
    assert step.buckets == [bucket_of(edited)] and edited in step.rows and other not in step.rows
    assert step.read == sum(1 for lid in ids if bucket_of(lid) == bucket_of(edited))  # one bucket's rows
    differing = store.rescan_digest().differing_buckets(store.digest().hex_buckets())
    assert differing == [bucket_of(other)]
    assert store.verify(bucket_of(other)).buckets == [bucket_of(other)]
    assert store.digest().hex_buckets() == store.rescan_digest().hex_buckets()


def test_verifying_the_rows_under_no_bucket_moves_them_to_their_own(store: CopyStore, url: str) -> None:
    store.apply(upsert(row("L-1")), 0, 0)
    hand_insert(url, "X-stray", "NULL", "NULL")
    step = store.verify(None)
    assert step.rows == ["X-stray"] and step.buckets == [bucket_of("X-stray")]
    assert "X-stray" in store.bucket_leaves(bucket_of("X-stray"))
    assert store.digest().hex_buckets() == store.rescan_digest().hex_buckets()


def test_a_version_edited_into_text_is_folded_in_not_a_crash(store: CopyStore, url: str) -> None:
    """SQLite keeps the text in an integer column; PostgreSQL refuses the edit itself."""
    store.apply(upsert(row("L-1")), 0, 0)
    if not url.startswith("sqlite"):
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            execute(url, "UPDATE copy_rows SET version = 'x' WHERE listing_id = 'L-1'")
        return
    execute(url, "UPDATE copy_rows SET version = 'x' WHERE listing_id = 'L-1'")
    step = store.verify(bucket_of("L-1"))
    assert step.rows == ["L-1"] and step.buckets == [bucket_of("L-1")]
    assert store.digest().hex_buckets() != expected_digest([row("L-1")]).hex_buckets()


def test_a_batch_that_failed_in_its_writes_leaves_the_store_usable(store: CopyStore, url: str) -> None:
    """The first batch fails after some of its writes (PostgreSQL made its staging tables in that
    transaction, so the rollback took them too); the next batch is taken all the same."""
    execute(url, "ALTER TABLE copy_outbox RENAME TO copy_outbox_away")
    with pytest.raises(StoreError, match="copy_outbox"):
        store.take([Change(upsert(row("L-1")), 0, 0, ack=lambda _: b"a0"), Change(delete("L-2", 1), 0, 1)])
    execute(url, "ALTER TABLE copy_outbox_away RENAME TO copy_outbox")
    batch: list[Change | Refusal] = [
        Change(upsert(row("L-1")), 0, 0, ack=lambda _: b"a0"),
        Change(delete("L-2", 1), 0, 1),
    ]
    assert store.take(batch) == [Applied.APPLIED, Applied.APPLIED]
    assert list(store.rows()) == [row("L-1")] and store.positions() == {0: 2}
    assert store.unsent_acks() == [(0, 0, b"a0")] and store.delivered_version("L-2") == 1
    assert store.digest().hex_buckets() == expected_digest([row("L-1")]).hex_buckets()
