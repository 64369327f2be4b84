"""The reconciler's small vocabulary: one difference found between a copy and its view.

Both sides are `Leaf`s (core: exactly what a copy's digest hashes per listing), so the
reconciler compares a few bytes per listing, never rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.core.copystore.probe import Leaf

Problem = Literal["missing", "extra", "wrong_version", "wrong_status", "altered"]
Basis = Literal["due", "shown"]
DUE: Basis = "due"  # a change the copy missed: wrong since the view asked for it
SHOWN: Basis = "shown"  # a copy changed under its sink: wrong since the first digest that showed it


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
    since: datetime  # since when the copy is wrong, on `basis`
    basis: Basis = DUE

    def describe(self) -> str:
        copy = f"v{self.actual.version} {self.actual.status}" if self.actual else "no row"
        view = f"v{self.expected.version} {self.expected.status}" if self.expected else "no row"
        return f"{self.problem}: copy holds {copy}, view holds {view}"
