"""Time-to-consistency: how long each agency's copy took to hold what its view said.

Three families per agency: `change` (a view change, from its emission to the copy's
acknowledgement) and two of repairs, from the moment the copy became wrong to the
acknowledgement of the reconciler's repair: `missed` (a change the copy never applied:
from when it was due, its emission) and `changed` (a copy changed under its sink, a
restore or a hand edit: from the first digest that showed it). The repair figures are
the ones that would have exposed Luoshan in seconds rather than years.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.core import metrics

CHANGE = "change"
MISSED = "missed"
CHANGED = "changed"
FAMILIES = {
    CHANGE: "a view change, emitted -> acknowledged",
    MISSED: "a repaired missed change, due (emitted) -> repair acknowledged",
    CHANGED: "a repaired copy changed under its sink, first digest showing it -> repair acknowledged",
}


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p99: float
    max: float


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class ConsistencyTimes:
    """Seconds-to-consistency samples per (agency, family)."""

    def __init__(self) -> None:
        self._samples: dict[tuple[str, str], list[float]] = {}

    def add(self, agency: str, family: str, seconds: float) -> None:
        self._samples.setdefault((agency, family), []).append(seconds)
        metrics.TIME_TO_CONSISTENCY.labels(agency, family).observe(seconds)

    def summary(self) -> dict[tuple[str, str], Summary]:
        out = {}
        for key, values in sorted(self._samples.items()):
            ordered = sorted(values)
            out[key] = Summary(len(ordered), percentile(ordered, 50), percentile(ordered, 99), ordered[-1])
        return out

    def table(self) -> str:
        """The summary as an aligned text table, one line per agency and family."""
        lines = [f"{'agency':<20} {'kind':<7} {'count':>7} {'p50 s':>9} {'p99 s':>9} {'max s':>9}"]
        for (agency, family), s in self.summary().items():
            lines.append(f"{agency:<20} {family:<7} {s.count:>7} {s.p50:>9.3f} {s.p99:>9.3f} {s.max:>9.3f}")
        return "\n".join(lines)
