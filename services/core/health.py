"""Health is progress: a service is healthy when it keeps up with its work, not when its process is up.

Every long-running service (publisher, ledger, copy sink, reconciler) keeps one `Progress`:
it marks each advance (a message handled, a change applied, a verdict heard) and notes what it
did lately (last comparison, expiries...). `judge` turns that, with the work still pending (the
consumer lag, measured by the caller) and the service's own SLA verdict, into a `Health`:
unhealthy (HTTP 503) when work is pending and nothing advanced within the threshold, when the
pending work cannot be measured, or when the service is behind its SLA. An idle service with
nothing to do is healthy however long it idles, and new work after a long idle is not a stall
at first sight: the clock runs from the later of the last advance and the first judgement
that saw the work pending (so a stall shows from the second look on). Pure: no Kafka, no HTTP.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Lag = Mapping[tuple[str, int], int]  # (topic, partition) -> messages not yet handled


@dataclass(frozen=True)
class Health:
    """A verdict and the facts it rests on; `body` is what `/health` answers."""

    service: str
    healthy: bool
    reasons: tuple[str, ...]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def status_code(self) -> int:
        return 200 if self.healthy else 503

    def body(self) -> dict[str, Any]:
        return {"service": self.service, "healthy": self.healthy, "reasons": list(self.reasons), **self.facts}


class Progress:
    """What one service has done lately; safe to update from its loop and read from its ops thread."""

    def __init__(
        self, service: str, stall_after_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.service, self.stall_after_s, self.clock = service, stall_after_s, clock
        self._lock = threading.Lock()
        self._started = clock()
        self._advanced: float | None = None
        self._advanced_wall: datetime | None = None
        self._pending_since: float | None = None  # first judgement that saw work pending, since an advance
        self.counts: Counter[str] = Counter()
        self.facts: dict[str, Any] = {}

    def advance(self, **counts: int) -> None:
        """The service did some of its work now; `counts` add to its running totals."""
        with self._lock:
            self._advanced, self._advanced_wall = self.clock(), datetime.now(UTC)
            self._pending_since = None
            self.counts.update(counts)

    def count(self, **counts: int) -> None:
        """Totals that grow without being an advance of the input (expiries asked, reseeks)."""
        with self._lock:
            self.counts.update(counts)

    def note(self, **facts: Any) -> None:
        """Facts worth showing with the verdict (last comparison, held messages...)."""
        with self._lock:
            self.facts.update(facts)

    def idle_s(self) -> float:
        """Seconds since the last advance (since the start, if none yet)."""
        with self._lock:
            return self.clock() - (self._advanced if self._advanced is not None else self._started)

    def judge(self, lag: Lag | int | None, behind: str | None = None) -> Health:
        """The verdict now: `lag` is the work pending, per partition or as a count (None: it could
        not be measured), `behind` says why the service is behind its SLA (None: it is not)."""
        idle = self.idle_s()
        reasons = []
        pending = lag if lag is None or isinstance(lag, int) else sum(lag.values())
        if pending == 0:
            with self._lock:
                self._pending_since = None
        if pending is None:
            reasons.append("the work pending cannot be measured: the broker did not answer")
        elif pending > 0 and self._waited_s() > self.stall_after_s:
            reasons.append(
                f"{pending} pending and nothing handled for {self._waited_s():.0f} s "
                f"(threshold {self.stall_after_s:.0f} s): not making progress"
            )
        if behind:
            reasons.append(behind)
        with self._lock:
            facts = {
                **dict(self.counts),
                **self.facts,
                "last_advance_at": self._advanced_wall.isoformat() if self._advanced_wall else None,
                "idle_s": round(idle, 1),
                "pending": pending,
                "lag": lag
                if lag is None or isinstance(lag, int)
                else {f"{t}[{p}]": n for (t, p), n in sorted(lag.items())},
            }
        return Health(self.service, not reasons, tuple(reasons), facts)

    def _waited_s(self) -> float:
        """How long pending work has waited without an advance, as far as judgements have seen."""
        with self._lock:
            now = self.clock()
            if self._pending_since is None:
                self._pending_since = now
            last = self._advanced if self._advanced is not None else self._started
            return now - max(last, self._pending_since)


def _named(lag: Lag | int | None) -> dict[str, int] | int | None:
    """Lag with JSON keys, `topic[partition]`."""
    if lag is None or isinstance(lag, int):
        return lag
    return {f"{topic}[{partition}]": n for (topic, partition), n in sorted(lag.items())}
