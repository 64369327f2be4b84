"""`accord reconcile report`: time-to-consistency and findings, replayed from the log.

Anyone can recompute these figures from the topics alone: view changes and their
acknowledgements give each change's time to consistency; `repaired` findings give
how long each stale listing stayed wrong, from the moment it went wrong: when a missed
change was due, or the first digest that showed a copy changed under its sink. Nothing
depends on a running reconciler.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.core.connection import KafkaConnection
from services.core.errors import ContractError
from services.core.events import CopyApplied, Event, Finding, ViewChanged
from services.core.kafka import decode_message, read_all
from services.core.policy import Policy
from services.core.topics import RECONCILER, Topics
from services.reconciler.acks import AckTracker, Sla
from services.reconciler.consistency import CHANGE, FAMILIES, ConsistencyTimes
from services.reconciler.findings import REPAIRED, family_of
from services.reconciler.kafkalog import timestamp_of

# The SLA does not change a time to consistency; it only decides what counts as late.
REPLAY_SLA = Sla(timedelta(days=3650), timedelta(days=3650))


@dataclass
class Report:
    times: ConsistencyTimes = field(default_factory=ConsistencyTimes)
    findings: Counter[tuple[str, str]] = field(default_factory=Counter)  # (agency, kind) -> count
    unacknowledged: int = 0
    unreadable: int = 0

    def text(self) -> str:
        lines = ["Time to consistency (seconds), by kind:"]
        lines += [f"  {kind:<8} {meaning}" for kind, meaning in FAMILIES.items()]
        lines.append("")
        lines += [self.times.table(), "", f"{'agency':<20} {'finding':<22} {'count':>7}"]
        lines += [f"{agency:<20} {kind:<22} {n:>7}" for (agency, kind), n in sorted(self.findings.items())]
        lines += ["", f"changes not acknowledged yet: {self.unacknowledged}"]
        if self.unreadable:
            lines.append(f"unreadable messages skipped: {self.unreadable}")
        return "\n".join(lines)


def replay(connection: KafkaConnection, topics: Topics, policy: Policy) -> Report:
    """Read the view topics, then the acknowledgements, then the findings: each ack after its change."""
    report, acks = Report(), AckTracker(REPLAY_SLA)
    for event, at in _events(connection, [*map(topics.views, policy.enforcers)], report):
        if isinstance(event, ViewChanged) and event.envelope.agency != RECONCILER:
            acks.expect(event, at)
    for event, _ in _events(connection, topics.all_copies_applied(policy.enforcers), report):
        if isinstance(event, CopyApplied):
            for settled in acks.acknowledge(event):
                report.times.add(settled.agency, CHANGE, settled.seconds)
    for event, _ in _events(connection, [topics.findings], report):
        if isinstance(event, Finding):
            _count(report, event)
    report.unacknowledged = acks.pending()
    return report


def _events(
    connection: KafkaConnection, names: list[str], report: Report
) -> Iterator[tuple[Event, datetime]]:
    for msg in read_all(connection, names):
        try:
            event = decode_message(msg).event
        except ContractError:
            report.unreadable += 1
            continue
        yield event, timestamp_of(msg) or event.envelope.recorded_at


def _count(report: Report, finding: Finding) -> None:
    report.findings[(finding.copy_agency, finding.kind)] += 1
    if finding.kind == REPAIRED and finding.since is not None:
        seconds = max(0.0, (finding.detected_at - finding.since).total_seconds())
        report.times.add(finding.copy_agency, family_of(finding), seconds)
