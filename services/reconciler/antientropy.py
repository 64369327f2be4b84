"""Anti-entropy: narrow a digest mismatch down to the exact listings, bucket by bucket.

Both sides split their leaves the same way (`bucket_of` over the listing id). Only
buckets whose hashes differ are opened: a bucket holding few expected listings is
answered with its leaves; a larger one is first split `FANOUT` ways and only the
differing sub-buckets are followed. A stale listing in a copy of a million rows
costs two bucket lists and a handful of leaves, never the copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.core.copystore.probe import CopyProbe, Leaf, split_hashes
from services.reconciler.expected import ExpectedViews

FANOUT = 256
# Up to this many expected listings a (sub)bucket is compared leaf by leaf (~90 bytes a leaf, one round
# trip); a larger one is first split FANOUT ways (~17 KB of sub-bucket hashes, one more round trip).
LEAF_LIMIT = 512
FINEST_SPLIT = 1 << 32  # bucket_of reads 32 bits of the hash: no split is finer than this


@dataclass(frozen=True)
class Suspect:
    """A listing whose leaf differs between the copy and the view (expected leaf value, copy's leaf)."""

    listing_id: str
    expected: int | None
    actual: Leaf | None


def narrow(agency: str, expected: ExpectedViews, copy_buckets: list[str], probe: CopyProbe) -> list[Suspect]:
    """Every listing whose leaf differs, asking the copy only about buckets that differ."""
    suspects: list[Suspect] = []
    for bucket in expected.digest(agency).differing_buckets(copy_buckets):
        suspects += _descend(agency, expected, probe, bucket, expected.size)
    return suspects


def _descend(agency: str, expected: ExpectedViews, probe: CopyProbe, bucket: int, size: int) -> list[Suspect]:
    wanted = expected.leaves(agency, bucket, size)
    if len(wanted) <= LEAF_LIMIT or size * FANOUT > FINEST_SPLIT:
        return compare_leaves(wanted, probe.leaves(bucket, size))
    theirs = probe.sub_digest(bucket, size, FANOUT)
    ours = split_hashes(wanted, bucket, size, FANOUT)
    suspects: list[Suspect] = []
    for j, (mine, copy) in enumerate(zip(ours, theirs, strict=True)):
        if mine != copy:
            suspects += _descend(agency, expected, probe, bucket + j * size, size * FANOUT)
    return suspects


def compare_leaves(wanted: dict[str, int], actual: dict[str, Leaf]) -> list[Suspect]:
    """Listings of one bucket whose expected leaf value and copy leaf disagree (or one is absent)."""
    suspects = []
    for listing_id in sorted(wanted.keys() | actual.keys()):
        got, want = actual.get(listing_id), wanted.get(listing_id)
        if got is None or want != got.value(listing_id):
            suspects.append(Suspect(listing_id, want, got))
    return suspects
