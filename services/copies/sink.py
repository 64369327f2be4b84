"""A copy sink: `views.<agency>` into the agency's database, each change once.

The database holds the position, not Kafka: the sink assigns itself every partition
and seeks to the offsets the store recorded with the last change it applied, so a
restart neither loses nor repeats a change, and nothing is ever committed to Kafka.
Each change is applied in one transaction with its position and its acknowledgement;
acknowledgements are sent after the write and cleared once the broker confirms them,
so a crash in between re-sends them (same id) instead of losing them.

Its health (`health`, served on `accord copy run --ops`) is its progress: the positions it
reached, kept in memory (the ops thread never touches the store), against the view topic's
end, and its freshness against the SLA.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial

from confluent_kafka import OFFSET_BEGINNING, Message, TopicPartition

from services.copies import messages
from services.copies.check import freshness
from services.copies.settings import CopySettings
from services.core import metrics, serde
from services.core.clock import Clock, utc_now
from services.core.cloudevent import source
from services.core.copystore import Applied, CopyStore, Holding
from services.core.errors import ConfigurationError, ContractError
from services.core.events import CopyApplied, Event, ViewChanged
from services.core.health import Health, Progress
from services.core.kafka import EventProducer, cached_lag, consumer, decode_message, raise_on_error
from services.core.policy import Policy
from services.core.position import Position
from services.core.rejections import rejected
from services.core.topics import copy_key

log = logging.getLogger("accord.copy")


class Sink:
    """Applies one agency's view changes to its store and reports what it did."""

    def __init__(
        self, agency: str, store: CopyStore, settings: CopySettings, policy: Policy, clock: Clock = utc_now
    ) -> None:
        self.agency, self.store, self.policy, self.clock = agency, store, policy, clock
        self.options = settings.options
        self.topics = settings.kafka.topics
        self.topic = self.topics.views(agency)
        connection = settings.kafka.connection
        self.producer = EventProducer(connection, source(self.topics.namespace, agency))
        self.consumer = consumer(connection, connection.group(f"copy-{agency}"))
        self.digests_sent = 0
        self.last_digest = 0.0
        self.applied = 0
        self.applied_at_digest = 0
        self.progress = Progress(f"copy-{agency}", stall_after_s=self.options.sla_s)
        self.positions: dict[int, int] = {}  # next offset per partition, as the store records them
        self.last_applied_at: datetime | None = None

    def start(self) -> None:
        """Re-send what a crash left unconfirmed, then read on from the store's own positions."""
        self._send_outbox()
        positions = self.store.positions()
        self.positions, self.last_applied_at = dict(positions), self.store.last_applied_at()
        self.consumer.assign(
            [TopicPartition(self.topic, p, positions.get(p, OFFSET_BEGINNING)) for p in self._partitions()]
        )
        self.publish_digest(rescan=True)

    def _partitions(self, timeout_s: float = 30.0) -> list[int]:
        """The view topic's partitions; a topic created a moment ago may need a while to show."""
        deadline = time.monotonic() + timeout_s
        while True:
            metadata = self.consumer.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                return list(metadata.partitions)
            if time.monotonic() > deadline:
                missing = f"topic {self.topic} does not exist: create the backbone's topics first"
                raise ConfigurationError(missing)
            time.sleep(0.5)

    def run(self, should_stop: Callable[[], bool]) -> None:
        self.start()
        try:
            while not should_stop():
                self.poll()
        finally:
            self.close()

    def poll(self) -> int:
        """One batch: apply it, confirm its acknowledgements, and publish a digest when due."""
        batch = self._next_batch()
        for msg in batch:
            raise_on_error(msg)
            self._take(msg)
            self.positions[msg.partition() or 0] = (msg.offset() or 0) + 1  # taken: in the store now
        if batch:
            self._send_outbox()
            self.progress.advance(handled=len(batch))
        caught_up = not batch and self.applied > self.applied_at_digest
        if caught_up or time.monotonic() - self.last_digest >= self.options.digest_interval_s:
            self.publish_digest(rescan=self.digests_sent % self.options.rescan_every == 0)
        return len(batch)

    def _next_batch(self) -> list[Message]:
        """Wait for one change, then take what else is already there: `consume` alone would
        hold a partial batch for its whole timeout, adding that to every change's latency."""
        first = self.consumer.poll(self.options.poll_s)
        if first is None:
            return []
        return [first, *self.consumer.consume(self.options.batch - 1, 0)]

    def _take(self, msg: Message) -> None:
        partition, offset = msg.partition() or 0, msg.offset() or 0
        try:
            event: Event = decode_message(msg).event
        except ContractError as e:
            self._refuse(msg, "undecodable", str(e))
            return
        fault = messages.fault(event, self.agency, self.policy)
        if fault is not None:
            self._refuse(msg, *fault)
            return
        assert isinstance(event, ViewChanged)
        outcome = self.store.apply(event, partition, offset, ack=partial(self._ack, event, partition, offset))
        if outcome is Applied.APPLIED:
            self.applied += 1
            self._applied(msg)
        elif outcome is Applied.OVERTAKEN:
            log.info("copy of %s passed over %s v%d from %s: it knows a later version", self.agency,
                     event.envelope.listing_id, event.envelope.version, event.envelope.agency)  # fmt: skip

    def _applied(self, msg: Message) -> None:
        self.last_applied_at = self.clock()
        metrics.COPY_APPLIED.labels(self.agency).inc()
        kind, millis = msg.timestamp()
        if kind and millis > 0:
            metrics.APPLY_LATENCY.labels(self.agency).observe(max(0.0, time.time() - millis / 1000))

    def health(self) -> Health:
        """Progress against the view topic's end, and behind the SLA when its freshness says stale."""
        positions = dict(self.positions)
        mine = [(self.topic, tp.partition) for tp in self.consumer.assignment()]
        lag = cached_lag(self.consumer, mine, {(self.topic, p): o for p, o in positions.items()})
        by_partition = {p: n for (_, p), n in lag.items()}
        fresh = freshness(positions, by_partition, self.last_applied_at, self.clock(), self.options.sla_s)
        health = self.progress.judge(lag, behind=fresh.note if fresh.stale else None)
        metrics.record(health, lag)
        return health

    def _ack(self, change: ViewChanged, partition: int, offset: int, held: Holding) -> bytes:
        """What the copy holds once it took the change: the change itself, or, when the change was
        older than what it knew (a repair the ledger overtook), what it kept instead."""
        listing_id = change.envelope.listing_id
        return serde.encode(
            messages.holding(listing_id, held.version, held.row, partition, offset, self.agency, self.clock())
        )

    def _refuse(self, msg: Message, code: str, reason: str) -> None:
        partition, offset = msg.partition() or 0, msg.offset() or 0
        where = Position(self.topic, partition, offset)
        record = rejected(self.agency, where, code, reason, msg.value(), self.clock())
        if self.store.skip(partition, offset, ack=serde.encode(record)):
            log.warning(
                "copy of %s refused %s[%d]@%d: %s", self.agency, msg.topic(), partition, offset, reason
            )

    def _send_outbox(self) -> None:
        """Send every kept acknowledgement or refusal, wait for the broker, then forget them."""
        unsent = self.store.unsent_acks()
        for _, _, data in unsent:
            event = serde.decode(data, "copy outbox")
            listing_id = event.envelope.listing_id
            if isinstance(event, CopyApplied):
                self.producer.send(
                    self.topics.copies_applied(self.agency), copy_key(self.agency, listing_id), event
                )
            else:
                self.producer.send(self.topics.rejected, listing_id, event)
        if unsent:
            self.producer.flush()
            self.store.acks_sent([(p, o) for p, o, _ in unsent])

    def publish_digest(self, rescan: bool) -> None:
        """The digest `apply` keeps (no row read); when `rescan`, first rebuilt from the rows, so that
        a running digest that disagrees with its rows (hand edits, a row removed that was never
        added) is corrected and the edits show in the digest the reconciler compares."""
        if rescan:
            self._reindex()
        digest = self.store.digest()
        event = messages.digest_of(self.agency, digest, self.store.positions(), self.clock())
        self.producer.send(self.topics.copies_digests(self.agency), self.agency, event)
        self.producer.poll(0)
        self.digests_sent += 1
        self.last_digest = time.monotonic()
        self.applied_at_digest = self.applied

    def _reindex(self) -> None:
        fixed = self.store.reindex()
        if fixed.rows or fixed.buckets:
            log.warning("copy of %s: running digest disagreed with its rows in buckets %s (%d rows with a "
                        "wrong bucket or leaf, e.g. %s): rebuilt from the rows", self.agency, fixed.buckets,
                        len(fixed.rows), fixed.rows[:3])  # fmt: skip

    def close(self) -> None:
        try:
            self.producer.close()
        finally:
            self.consumer.close()
