"""Anti-entropy narrows a digest mismatch to the exact listings, asking the copy only about
differing buckets (and sub-buckets), never for the whole copy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.core.copystore.probe import split_hashes
from services.core.digest import bucket_of
from services.core.listing import evolve
from services.core.views import project
from services.reconciler.antientropy import narrow
from services.reconciler.expected import ExpectedViews
from services.reconciler.probe import MeteredProbe, wire_size
from tests.support.factory import T0, Ledgerbook, policy_with_keys
from tests.unit.reconciler.support import MemoryCopy


def build(folder: Path, listings: int, size: int) -> tuple[ExpectedViews, MemoryCopy]:
    """A view of `listings` listings and a copy holding exactly that view."""
    policy, keystore = policy_with_keys(folder)
    book = Ledgerbook(keystore)
    expected = ExpectedViews(policy, ["civil-aviation"], size)
    copy = MemoryCopy("civil-aviation", size=size)
    for i in range(listings):
        state = evolve(None, book.issue(f"L-{i:05}"))
        expected.update(state, T0)
        row = project(state, "civil-aviation", policy)
        assert row is not None
        copy.rows[row.listing_id] = row
    return expected, copy


def test_an_equal_copy_costs_one_digest_and_no_leaves(tmp_path: Path) -> None:
    expected, copy = build(tmp_path, 40, 256)
    probe = MeteredProbe(copy)
    assert narrow("civil-aviation", expected, copy.digest(), probe).suspects == []
    assert probe.bytes == 0


def test_every_kind_of_difference_is_named_and_nothing_else(tmp_path: Path) -> None:
    expected, copy = build(tmp_path, 60, 256)
    older = copy.rows["L-00001"].model_copy(update={"version": 0})
    copy.rows["L-00001"] = older  # wrong version
    copy.rows["L-00002"] = copy.rows["L-00002"].model_copy(update={"status": "disputed"})  # wrong status
    copy.rows["L-00003"] = copy.rows["L-00003"].model_copy(
        update={"fields": {"case_ref": "forged"}}
    )  # altered
    del copy.rows["L-00004"]  # missing
    copy.rows["X-1"] = copy.rows["L-00005"].model_copy(update={"listing_id": "X-1"})  # extra
    narrowed = narrow("civil-aviation", expected, copy.digest(), MeteredProbe(copy))
    suspects = narrowed.suspects
    assert narrowed.unexplained == []
    assert {s.listing_id for s in suspects} == {"L-00001", "L-00002", "L-00003", "L-00004", "X-1"}
    by_id = {s.listing_id: s for s in suspects}
    assert by_id["L-00004"].actual is None and by_id["X-1"].expected is None
    assert by_id["L-00001"].actual is not None and by_id["L-00001"].actual.version == 0


def test_a_large_bucket_is_split_so_only_a_sliver_of_the_copy_is_read(tmp_path: Path) -> None:
    """Four buckets of ~600 listings: the differing one is split 256 ways before any leaf is read."""
    expected, copy = build(tmp_path, 2400, 4)
    stale = copy.rows["L-00042"].model_copy(update={"expires_at": T0 + timedelta(days=9999)})
    copy.rows["L-00042"] = stale
    probe = MeteredProbe(copy)
    narrowed = narrow("civil-aviation", expected, copy.digest(), probe)
    assert [s.listing_id for s in narrowed.suspects] == ["L-00042"] and narrowed.unexplained == []
    every_leaf = wire_size({lid: list(leaf) for b in range(4) for lid, leaf in copy.leaves(b, 4).items()})
    assert probe.bytes < every_leaf / 10


def test_rows_the_copy_files_under_another_bucket_are_still_found(tmp_path: Path) -> None:
    """Inserted by hand with a copied, wrong or no bucket: narrowing fetches the misplaced rows."""
    expected, copy = build(tmp_path, 60, 256)
    copy.rows["X-1"] = copy.rows["L-00005"].model_copy(update={"listing_id": "X-1"})  # extra
    copy.misfiled |= {"X-1", "L-00007"}  # L-00007 is right, only filed under the wrong bucket
    probe = MeteredProbe(copy)
    narrowed = narrow("civil-aviation", expected, copy.digest(), probe)
    assert [s.listing_id for s in narrowed.suspects] == ["X-1"] and narrowed.unexplained == []


def test_a_bucket_no_listing_explains_is_reported_unexplained(tmp_path: Path) -> None:
    expected, copy = build(tmp_path, 60, 256)
    del copy.rows["L-00003"]
    buckets = copy.digest()
    lied = (bucket_of("L-00003") + 1) % 256
    buckets[lied] = "ff" * 32  # a bucket hash no row of the copy adds up to
    narrowed = narrow("civil-aviation", expected, buckets, MeteredProbe(copy))
    assert [s.listing_id for s in narrowed.suspects] == ["L-00003"]
    assert narrowed.unexplained == [lied]


def test_the_expected_split_from_stored_spots_equals_hashing_every_listing_id(tmp_path: Path) -> None:
    """`ExpectedViews.split` reads the stored hash bits instead of hashing each id again: same answer."""
    expected, _ = build(tmp_path, 300, 4)
    for bucket in range(4):
        wanted = expected.leaves("civil-aviation", bucket, 4)
        assert expected.count("civil-aviation", bucket, 4) == len(wanted) > 0
        assert expected.split("civil-aviation", bucket, 4, 16) == split_hashes(wanted, bucket, 4, 16)
