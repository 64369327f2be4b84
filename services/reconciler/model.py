"""The reconciler's small vocabulary: a copy's leaf for one listing, and one difference found.

A `Leaf` is exactly what a copy's digest hashes per listing, so the reconciler can
ask a copy for leaves (a few bytes each) instead of rows, and compare them with
the leaves of the expected view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from services.core.digest import MODULUS, bucket_of, leaf
from services.core.views import ViewRow

RECONCILER = "reconciler"  # the envelope agency of every event the reconciler emits

Problem = Literal["missing", "extra", "wrong_version", "wrong_status", "altered"]


class Leaf(NamedTuple):
    """One listing as a copy's digest sees it."""

    version: int
    status: str
    row_hash: str

    def value(self, listing_id: str) -> int:
        return leaf(listing_id, self.version, self.status, self.row_hash)

    @classmethod
    def of(cls, row: ViewRow) -> Leaf:
        return cls(row.version, row.status, row.row_hash())


def problem_of(expected: Leaf | None, actual: Leaf | None) -> Problem:
    """What is wrong with a copy's leaf, in the words an operator uses."""
    if expected is None:
        return "extra"
    if actual is None:
        return "missing"
    if actual.version != expected.version:
        return "wrong_version"
    if actual.status != expected.status:
        return "wrong_status"
    return "altered"


@dataclass(frozen=True)
class Difference:
    """One listing where an agency's copy disagrees with its view, past any SLA allowance."""

    agency: str
    listing_id: str
    problem: Problem
    expected: Leaf | None
    actual: Leaf | None
    expected_version: int
    ended_as: str | None  # "revoked" or "expired" when the listing has ended, else None
    since: datetime  # when the view first asked for what the copy lacks

    def describe(self) -> str:
        copy = f"v{self.actual.version} {self.actual.status}" if self.actual else "no row"
        view = f"v{self.expected.version} {self.expected.status}" if self.expected else "no row"
        return f"{self.problem}: copy holds {copy}, view holds {view}"


def split_hashes(values: Mapping[str, int], bucket: int, size: int, fanout: int) -> list[str]:
    """Hashes of the `fanout` sub-buckets of `bucket`: its leaves regrouped by a finer split.

    Sub-bucket j of bucket b (in a `size` split) is bucket b + j*size of the `size*fanout`
    split, because `bucket_of` takes the same hash modulo both sizes.
    """
    sums = [0] * fanout
    for listing_id, value in values.items():
        j = bucket_of(listing_id, size * fanout) // size
        sums[j] = (sums[j] + value) % MODULUS
    return [f"{s:064x}" for s in sums]
