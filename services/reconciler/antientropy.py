"""Anti-entropy: narrow a digest mismatch down to the exact listings, bucket by bucket.

Both sides split their leaves the same way (`bucket_of` over the listing id). Only
buckets whose hashes differ are opened: a bucket holding few expected listings is
answered with its leaves; a larger one is first split `FANOUT` ways and only the
differing sub-buckets are followed. A stale listing in a copy of a million rows
costs two bucket lists and a handful of leaves, never the copy.

Every differing bucket is then proved explained: the expected bucket, with each
suspect's expected leaf swapped for the copy's, must add up to the copy's bucket
hash. A bucket that does not holds a row the copy files elsewhere (a row inserted by
hand with a copied, wrong or no bucket): the copy's misplaced rows are fetched once
and the bucket narrowed again with them. One that still does not add up is reported
as unexplained, never silently passed over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.core.copystore.probe import CopyProbe, Leaf, split_hashes
from services.core.digest import FINEST_SPLIT, MODULUS, bucket_of
from services.reconciler.expected import ExpectedViews

FANOUT = 256
# Up to this many expected listings a (sub)bucket is compared leaf by leaf (~90 bytes a leaf, one round
# trip); a larger one is first split FANOUT ways (~17 KB of sub-bucket hashes, one more round trip).
LEAF_LIMIT = 512


@dataclass(frozen=True)
class Suspect:
    """A listing whose leaf differs between the copy and the view (expected leaf value, copy's leaf)."""

    listing_id: str
    expected: int | None
    actual: Leaf | None


@dataclass
class Narrowed:
    """The suspects of a mismatch, and the buckets they do not fully explain."""

    suspects: list[Suspect] = field(default_factory=list)
    unexplained: list[int] = field(default_factory=list)


def narrow(agency: str, expected: ExpectedViews, copy_buckets: list[str], probe: CopyProbe) -> Narrowed:
    """Every listing whose leaf differs, asking the copy only about buckets that differ."""
    found = Narrowed()
    misplaced: dict[str, Leaf] | None = None
    for bucket in expected.digest(agency).differing_buckets(copy_buckets):
        suspects = _descend(agency, expected, probe, bucket, expected.size, {})
        if not _explains(expected, agency, bucket, copy_buckets, suspects):
            misplaced = probe.misplaced() if misplaced is None else misplaced
            suspects = _descend(agency, expected, probe, bucket, expected.size, misplaced)
            if not _explains(expected, agency, bucket, copy_buckets, suspects):
                found.unexplained.append(bucket)
        found.suspects += suspects
    return found


def _explains(
    expected: ExpectedViews, agency: str, bucket: int, copy_buckets: list[str], suspects: list[Suspect]
) -> bool:
    """Whether the expected bucket, corrected by the suspects, is the copy's bucket exactly."""
    total = expected.digest(agency).buckets[bucket]
    for s in suspects:
        total += (s.actual.value(s.listing_id) if s.actual else 0) - (s.expected or 0)
    return total % MODULUS == int(copy_buckets[bucket], 16)


def _descend(
    agency: str, expected: ExpectedViews, probe: CopyProbe, bucket: int, size: int, extra: dict[str, Leaf]
) -> list[Suspect]:
    """`extra`: rows the copy files under another bucket, put back where their listing id belongs."""
    mine = {lid: leaf for lid, leaf in extra.items() if bucket_of(lid, size) == bucket}
    if expected.count(agency, bucket, size) <= LEAF_LIMIT or size * FANOUT > FINEST_SPLIT:
        return compare_leaves(expected.leaves(agency, bucket, size), probe.leaves(bucket, size) | mine)
    theirs = probe.sub_digest(bucket, size, FANOUT)
    if mine:
        extras = split_hashes({lid: leaf.value(lid) for lid, leaf in mine.items()}, bucket, size, FANOUT)
        theirs = [f"{(int(a, 16) + int(b, 16)) % MODULUS:064x}" for a, b in zip(theirs, extras, strict=True)]
    ours = expected.split(agency, bucket, size, FANOUT)
    suspects: list[Suspect] = []
    for j, (want, copy) in enumerate(zip(ours, theirs, strict=True)):
        if want != copy:
            suspects += _descend(agency, expected, probe, bucket + j * size, size * FANOUT, extra)
    return suspects


def compare_leaves(wanted: dict[str, int], actual: dict[str, Leaf]) -> list[Suspect]:
    """Listings of one bucket whose expected leaf value and copy leaf disagree (or one is absent)."""
    suspects = []
    for listing_id in sorted(wanted.keys() | actual.keys()):
        got, want = actual.get(listing_id), wanted.get(listing_id)
        if got is None or want != got.value(listing_id):
            suspects.append(Suspect(listing_id, want, got))
    return suspects
