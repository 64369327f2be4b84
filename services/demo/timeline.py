"""What the Luoshan demo saw, when, and the figures the README quotes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.core.events import Finding


@dataclass
class Timeline:
    """What happened, when, and the figures the README quotes."""

    namespace: str
    listing_id: str = ""
    steps: list[tuple[datetime, str]] = field(default_factory=list)
    revoked_at: datetime | None = None
    restored_at: datetime | None = None
    detection: Finding | None = None
    repaired_at: datetime | None = None
    listed_at_the_end: bool = True
    consistency: str = ""

    def add(self, at: datetime, text: str) -> None:
        self.steps.append((at, text))

    def wrong_for(self) -> float:
        assert self.restored_at and self.repaired_at
        return (self.repaired_at - self.restored_at).total_seconds()

    def header(self) -> str:
        return f"The Luoshan case, replayed on Accord (topics {self.namespace}*)\n"

    def summary(self) -> str:
        """The figures: when the revocation happened, when the lost copy was found and repaired."""
        lines = []
        if self.detection and self.revoked_at and self.repaired_at and self.restored_at:
            lines += [
                f"  revoked at   {self.revoked_at.isoformat(timespec='milliseconds')}",
                f"  detected at  {self.detection.detected_at.isoformat(timespec='milliseconds')}",
                f"  repaired at  {self.repaired_at.isoformat(timespec='milliseconds')}",
                f"  civil aviation's copy was wrong for {self.wrong_for():.2f} s (restore -> repair);",
                "  in the real case it was wrong for four years and nobody noticed.",
                "",
            ]
        return "\n".join([*lines, self.consistency])

    def render(self) -> str:
        start = self.steps[0][0]
        steps = [f"  +{(at - start).total_seconds():6.2f} s  {text}" for at, text in self.steps]
        return "\n".join([self.header(), *steps, "", self.summary()])
