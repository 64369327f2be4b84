"""Which findings are already in the log, and which detections are still open.

Read back from the `findings` topic (so a restart, or a standby taking over, knows what
was published before it) and fed with what this reconciler publishes. A finding whose id
is known is never published again; a detection stays open until a closing finding
(acknowledged late, repaired, resolved) derived from its id is in the log.
"""

from __future__ import annotations

from services.core.events import Finding
from services.reconciler import findings


class FindingBook:
    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._open: dict[str, Finding] = {}
        self._closes: dict[str, str] = {}  # id of a closing finding -> the detection it closes

    def seen(self, finding_id: str) -> bool:
        """Whether the finding is in the log (read back, or published by this reconciler)."""
        return finding_id in self._seen

    def note(self, finding: Finding) -> str | None:
        """Remember a finding as in the log; the id of the detection it closes, if it closes one."""
        self._seen.add(finding.finding_id)
        if finding.kind in findings.DETECTIONS:
            self._open[finding.finding_id] = finding
            for kind in findings.CLOSERS:
                self._closes[findings.finding_id(kind, finding.finding_id)] = finding.finding_id
        closed = self._closes.pop(finding.finding_id, None)
        if closed is not None:
            self._open.pop(closed, None)
        return closed

    def is_open(self, finding_id: str) -> bool:
        return finding_id in self._open

    def open_for(self, agency: str) -> list[Finding]:
        """Open detections about `agency`'s copy."""
        return [f for f in self._open.values() if f.copy_agency == agency]

    def open_stale(self, agency: str, listing_id: str) -> Finding | None:
        """The open detection of a stale listing in `agency`'s copy, if there is one."""
        about = (agency, listing_id)
        stale = (f for f in self._open.values() if f.kind in findings.STALE_KINDS)
        return next((f for f in stale if (f.copy_agency, f.envelope.listing_id) == about), None)

    def open_of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self._open.values() if f.kind == kind]

    def open_by_kind(self) -> dict[str, int]:
        """How many detections of each kind are open (every kind, zero included)."""
        counts = dict.fromkeys(findings.DETECTIONS, 0)
        for finding in self._open.values():
            counts[finding.kind] += 1
        return counts

    def __len__(self) -> int:
        return len(self._open)
