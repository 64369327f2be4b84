"""The bucketed digest: order-free incremental updates, and mismatches narrowed to their buckets.

A copy's digest is maintained row by row as changes arrive, in whatever order; the
reconciler computes the expected digest from scratch. The two must agree exactly
when the rows agree, and differing buckets must name exactly where rows differ.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.digest import Digest, bucket_of, leaf, root_of

FAST = settings(max_examples=80, deadline=None)
IDS = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=8)
ROWS = st.dictionaries(
    IDS, st.tuples(st.integers(1, 5), st.sampled_from(["active", "disputed"])), max_size=30
)
SIZES = st.sampled_from([1, 4, 16, 256])


def leaves(rows: dict[str, tuple[int, str]]) -> dict[str, int]:
    return {
        lid: leaf(lid, version, status, f"hash-{lid}-{version}") for lid, (version, status) in rows.items()
    }


@FAST
@given(final=ROWS, transient=ROWS, size=SIZES, seed=st.integers())
def test_incremental_in_any_order_equals_digest_of_the_final_rows(
    final: dict[str, tuple[int, str]], transient: dict[str, tuple[int, str]], size: int, seed: int
) -> None:
    """Rows that came and went (old versions, deleted rows) leave no trace, whatever the order."""
    kept, gone = leaves(final), leaves({f"gone-{k}": v for k, v in transient.items()})
    operations = [("add", lid, value) for lid, value in [*kept.items(), *gone.items()]]
    operations += [("remove", lid, value) for lid, value in gone.items()]
    random.Random(seed).shuffle(operations)
    digest = Digest(size)
    for op, lid, value in operations:
        (digest.add if op == "add" else digest.remove)(lid, value)
    expected = Digest.of(kept.items(), size)
    assert digest == expected
    assert digest.root() == expected.root()
    assert digest.rows == len(final)


@FAST
@given(rows=ROWS, changed=st.data(), size=SIZES)
def test_differing_buckets_are_exactly_those_of_changed_rows(
    rows: dict[str, tuple[int, str]], changed: st.DataObject, size: int
) -> None:
    copy = dict(rows)
    names = sorted(rows)
    edited = changed.draw(st.lists(st.sampled_from(names), unique=True) if names else st.just([]))
    for lid in edited:
        version, status = copy[lid]
        copy[lid] = changed.draw(st.sampled_from([(version + 1, status), (version, "revoked")]))
    deleted = changed.draw(st.lists(st.sampled_from(names), unique=True) if names else st.just([]))
    for lid in deleted:
        copy.pop(lid, None)
    stray = changed.draw(st.lists(IDS.map(lambda s: f"stray-{s}"), unique=True, max_size=3))
    copy.update({lid: (1, "active") for lid in stray})
    truth, held = Digest.of(leaves(rows).items(), size), Digest.of(leaves(copy).items(), size)
    expected = sorted({bucket_of(lid, size) for lid in {*edited, *deleted, *stray}})
    assert truth.differing_buckets(held.hex_buckets()) == expected
    assert (truth.root() == held.root()) == (not expected)


def test_leaf_changes_with_every_part_of_the_row() -> None:
    variants = [("L-1", 3, "active", "h"), ("L-2", 3, "active", "h"), ("L-1", 4, "active", "h"),
                ("L-1", 3, "disputed", "h"), ("L-1", 3, "active", "g")]  # fmt: skip
    assert len({leaf(*v) for v in variants}) == len(variants)


def test_bucket_of_is_stable_across_processes() -> None:
    """Python's hash() is salted per process; the digest must not be. Pinned values prove it."""
    assert bucket_of("luoshan-police:2016-0042") == 69
    assert bucket_of("luoshan-police:2016-0042", 16) == 69 % 16
    assert all(0 <= bucket_of(f"L-{i}", 16) < 16 for i in range(100))


def test_digests_of_other_sizes_differ_everywhere() -> None:
    digest = Digest.of([("L-1", 1)], 16)
    assert digest.differing_buckets(["0" * 64] * 8) == list(range(16))


def test_empty_digest_has_empty_buckets_and_a_fixed_root() -> None:
    digest = Digest(4)
    assert digest.hex_buckets() == ["0" * 64] * 4
    assert digest.root() == root_of(["0" * 64] * 4)
    assert digest.rows == 0


@pytest.mark.parametrize("size", [1, 256])
def test_removing_what_was_added_restores_the_digest(size: int) -> None:
    digest = Digest.of([("L-1", 5), ("L-2", 7)], size)
    before = Digest.of([("L-1", 5), ("L-2", 7)], size)
    digest.add("L-3", 2**256 - 1)
    digest.remove("L-3", 2**256 - 1)
    assert digest == before
