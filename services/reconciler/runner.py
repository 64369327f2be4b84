"""`accord reconcile run`: read the backbone, feed the engine, publish what it finds and repairs.

One plain consumer reads `ledger`, every `views.<agency>`, `copies.applied` and
`copies.digests` from the beginning (the reconciler's state is rebuilt from the
log on start, like every other view of it). Deadlines and anti-entropy run only
when a poll comes back short — the reconciler has caught up — so a lagging
reconciler never mistakes its own lag for a copy's fault. A bad message goes to
`rejected` and the loop goes on; a bug in the engine stops the process loudly.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from services.core.copystore.probe import CopyProbe
from services.core.errors import AccordError, ConfigurationError, ContractError
from services.core.events import CopyApplied, CopyDigest, Envelope, ListingState, Rejected, ViewChanged
from services.core.kafka import EventProducer, consumer, decode_message, raise_on_error
from services.core.policy import Policy
from services.core.settings import KafkaSettings
from services.core.topics import RECONCILER, copy_key
from services.reconciler.engine import Outcome, Reconciler
from services.reconciler.settings import ReconcilerSettings

BATCH = 500
POLL_S = 0.2
NEVER = float("-inf")
TOPIC_WAIT_S = 15.0


def from_the_start(reader: Consumer, names: list[str], wait_s: float = TOPIC_WAIT_S) -> list[TopicPartition]:
    """Every partition of `names`, at offset 0; a topic created a moment ago may take a while to show."""
    deadline = time.monotonic() + wait_s
    while True:
        topics = reader.list_topics(timeout=10).topics
        missing = [n for n in names if n not in topics or not topics[n].partitions]
        if not missing:
            return [TopicPartition(n, p, OFFSET_BEGINNING) for n in names for p in topics[n].partitions]
        if time.monotonic() > deadline:
            raise ConfigurationError(f"topics {missing} do not exist: create them (accord backbone up)")
        time.sleep(0.5)


def timestamp_of(msg: Message) -> datetime | None:
    kind, millis = msg.timestamp()
    return datetime.fromtimestamp(millis / 1000, UTC) if kind and millis > 0 else None


class Runner:
    def __init__(
        self,
        kafka: KafkaSettings,
        settings: ReconcilerSettings,
        policy: Policy,
        probes: Mapping[str, CopyProbe],
        log: Callable[[str], None],
    ) -> None:
        self.kafka, self.settings, self.probes, self.log = kafka, settings, probes, log
        self.topics = kafka.topics
        self.engine = Reconciler(policy, policy.enforcers, settings.timing())
        self.producer = EventProducer(kafka.connection)
        self._last: dict[str, float] = {}
        self._digest_seen: dict[str, datetime] = {}
        self.read = 0

    def run(self, stop: threading.Event) -> None:
        reader = self._subscribe()
        try:
            while not stop.is_set():
                batch = reader.consume(num_messages=BATCH, timeout=POLL_S)
                for msg in batch:
                    self.handle(msg)
                if len(batch) < BATCH:
                    self.tick(datetime.now(UTC))
        finally:
            reader.close()
            self.producer.flush()
            self.log(self.progress())
            self.log(self.engine.times.table())

    def _subscribe(self) -> Consumer:
        names = [self.topics.ledger, *map(self.topics.views, self.engine.expected.agencies),
                 *self.topics.all_copies_applied(self.engine.expected.agencies),
                 *self.topics.all_copies_digests(self.engine.expected.agencies)]  # fmt: skip
        connection = self.kafka.connection
        reader = consumer(connection, connection.group(f"follow-{uuid.uuid4()}"))
        try:
            reader.assign(from_the_start(reader, names))
        except ConfigurationError:
            reader.close()
            raise
        return reader

    # --- reading -------------------------------------------------------------------

    def handle(self, msg: Message) -> None:
        raise_on_error(msg)
        self.read += 1
        try:
            event = decode_message(msg).event
        except ContractError as e:
            self._reject(msg, e)
            return
        if isinstance(event, CopyApplied | CopyDigest) and not self._own_topic(event, msg):
            return
        at = timestamp_of(msg) or event.envelope.recorded_at
        if isinstance(event, ListingState):
            self.engine.on_state(event, at, msg.value())
        elif isinstance(event, ViewChanged):
            self.engine.on_view(event, msg.partition() or 0, msg.offset() or 0, at)
        elif isinstance(event, CopyApplied):
            self.publish(self.engine.on_applied(event))
        elif isinstance(event, CopyDigest):
            self.engine.on_digest(event)
        else:
            self.log(f"ignored a {type(event).__name__} on {msg.topic()}: not an input of the reconciler")

    def _own_topic(self, event: CopyApplied | CopyDigest, msg: Message) -> bool:
        """A copy's report counts only on that copy's own topic (ACLs let only it write there)."""
        if event.copy_agency == self.topics.reporting_copy(msg.topic() or ""):
            return True
        name = type(event).__name__
        self._reject(msg, ContractError(f"a {name} for {event.copy_agency} on {msg.topic()}: not its topic"))
        return False

    def _reject(self, msg: Message, error: ContractError) -> None:
        """A message nobody can read goes to `rejected` with the reason; the next one is read as usual."""
        self.log(f"REJECTED {error}")
        key = (msg.key() or b"").decode(errors="replace")
        now = datetime.now(UTC)
        where = f"{msg.topic()}:{msg.partition()}:{msg.offset()}"
        env = Envelope(event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, where)), listing_id=key, version=0,
                       agency=RECONCILER, occurred_at=now, recorded_at=now)  # fmt: skip
        rejected = Rejected(envelope=env, source_topic=msg.topic() or "", partition=msg.partition() or 0,
                            offset=msg.offset() or 0, reason_code="contract", reason=str(error),
                            payload=msg.value() or b"")  # fmt: skip
        self.producer.send(self.topics.rejected, key, rejected)

    # --- acting when caught up -------------------------------------------------------

    def tick(self, now: datetime) -> None:
        if self._due("check", self.settings.check_interval_s):
            self.publish(self.engine.check(now))
        for agency, probe in self.probes.items():
            self._anti_entropy(agency, probe, now)
        if self._due("report", self.settings.report_interval_s, first=False):
            self.log(self.progress())
            self.log(self.engine.times.table())

    def progress(self) -> str:
        """Health is progress: messages read, changes awaiting acknowledgement, repairs in flight."""
        engine = self.engine
        parts = [
            f"{self.read} messages read",
            f"{len(engine.expected)} listings",
            f"{engine.acks.pending()} changes awaiting acknowledgement",
            f"{len(engine.repairs)} repairs open",
        ]
        return "progress: " + ", ".join(parts)

    def _due(self, name: str, every: float, first: bool = True) -> bool:
        clock = time.monotonic()
        last = self._last.setdefault(name, NEVER if first else clock)
        if clock - last < every:
            return False
        self._last[name] = clock
        return True

    def _anti_entropy(self, agency: str, probe: CopyProbe, now: datetime) -> None:
        published = self.engine.digests.get(agency)
        fresh = published is not None and published.taken_at != self._digest_seen.get(agency)
        if not (fresh or self._due(f"pass:{agency}", self.settings.antientropy_interval_s)):
            return
        deep = published is None or self._due(f"deep:{agency}", self.settings.deep_interval_s)
        if published is not None:
            self._digest_seen[agency] = published.taken_at
        try:
            buckets = probe.digest() if deep or published is None else published.buckets
            if self.engine.healthy(agency, buckets):
                return
            outcome, report = self.engine.reconcile(agency, buckets, probe, now)
        except AccordError as e:
            self.log(f"anti-entropy on {agency}'s copy failed, will retry: {e}")
            return
        if report.differences:
            self.log(f"{agency}: {len(report.differences)} stale listings in {report.differing_buckets} "
                     f"buckets, {report.bytes_exchanged} bytes exchanged")  # fmt: skip
        self.publish(outcome)

    def publish(self, outcome: Outcome) -> None:
        for finding in outcome.findings:
            listing_id = finding.envelope.listing_id
            self.log(f"FINDING {finding.kind} {finding.copy_agency} {listing_id}: {finding.detail}")
            self.producer.send(self.topics.findings, copy_key(finding.copy_agency, listing_id), finding)
        for change in outcome.repairs:
            self.producer.send(self.topics.views(change.view_agency), change.envelope.listing_id, change)
        if outcome.findings or outcome.repairs:
            self.producer.flush()
