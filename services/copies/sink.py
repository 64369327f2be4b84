"""A copy sink: `views.<agency>` into the agency's database, each change once.

The database holds the position: the sink assigns itself every partition and seeks to the
offsets the store recorded with the last change it applied, so a restart neither loses nor
repeats a change. It reads a batch, decides each message (apply, pass over, refuse), and
takes the whole batch in ONE transaction with its positions and its acknowledgements (on a
writer thread, while the loop reads and decides the next batch: the database's work and the
broker's waits overlap the decoding, and a batch read ahead is only ever taken by the next poll,
so a crash loses nothing the store's positions do not bring back);
the acknowledgements are sent after the commit and each is cleared from the store once the
broker confirmed it, so a crash in between re-sends them (same ids, same bytes) instead of
losing them. The sink does not wait for those confirmations batch by batch (a round trip
and the producer's linger each time): it goes on with the next batch and clears what was
confirmed so far, and waits for every one when it runs out of changes, or when more than
`IN_FLIGHT_BATCHES` batches' worth are unconfirmed; one the broker refused stops it (the
next start re-sends it). It commits the positions to its consumer group too, asynchronously,
so standard lag tools see the copy's lag; the group's offsets are never read back.

Between batches it re-verifies its rows, one bucket at a time, within a budget of rows per
minute (`verify_rows_per_minute`), so a hand edit reaches the digest without a full rescan.

Its health (`health`, served on `accord copy run --ops`) is its progress: the positions it
reached, kept in memory (the ops thread never touches the store), against the view topic's
end, and its freshness against the SLA.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from confluent_kafka import KafkaError

from services.copies import messages
from services.copies.check import freshness
from services.copies.clients import Record, Reporter, ViewFeed
from services.copies.settings import CopySettings
from services.core import metrics, serde
from services.core.clock import Clock, utc_now
from services.core.cloudevent import Encoded
from services.core.copystore import Applied, Change, CopyStore, Holding, Refusal
from services.core.digest import DEFAULT_BUCKETS
from services.core.errors import BrokerUnavailable, ContractError
from services.core.events import Event, ViewChanged
from services.core.health import Health, Progress
from services.core.policy import Policy
from services.core.position import Position
from services.core.rejections import rejected
from services.core.topics import copy_key

log = logging.getLogger("accord.copy")
STEP_ROWS = 50  # what one verification step costs beyond the rows it reads (a transaction, a query)
IN_FLIGHT_BATCHES = 4  # unconfirmed acknowledgements, in batches, beyond which the sink waits for the broker
CLOSE_WAIT_S = 5.0  # how long a closing sink waits for the broker to confirm what it sent


class Budget:
    """Rows the rolling verification may read: `per_minute`, accrued as time passes, at most one
    second's worth saved up, so the cost per minute is bounded however the sink is paced."""

    def __init__(self, per_minute: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.monotonic = per_minute / 60.0, monotonic
        self.allowance, self.last = 0.0, monotonic()

    def refill(self) -> None:
        now = self.monotonic()
        self.allowance = min(self.allowance + (now - self.last) * self.rate, max(self.rate, 1.0))
        self.last = now

    def due(self) -> bool:
        return self.allowance > 0

    def spend(self, rows: int) -> None:
        """A step costs its rows plus `STEP_ROWS` for asking at all: an empty copy is not polled flat out."""
        self.allowance -= rows + STEP_ROWS


@dataclass
class Batch:
    """One fetch's messages, what the sink decided for each, and what it reports of them: its
    acknowledgements (written while the store takes the batch, dated then) and refusals."""

    records: list[Record]
    items: list[Change | Refusal] = field(default_factory=list)
    reports: dict[tuple[int, int], Encoded] = field(default_factory=dict)  # by (partition, offset)
    acks: messages.Acknowledgements | None = None  # set when the batch is taken

    def ack(self, listing_id: str, partition: int, offset: int, held: Holding) -> bytes:
        """What the copy holds once it took the change: the change itself, or, when the change was
        older than what it knew (a repair the ledger overtook), what it kept instead."""
        assert self.acks is not None, "acknowledged while taken"
        ack = self.acks.of(listing_id, held.version, held.row_hash, partition, offset)
        self.reports[partition, offset] = ack
        return ack.value


class Sink:
    """Applies one agency's view changes to its store and reports what it did."""

    def __init__(
        self,
        agency: str,
        store: CopyStore,
        settings: CopySettings,
        policy: Policy,
        feed: ViewFeed,
        reporter: Reporter,
        clock: Clock = utc_now,
    ) -> None:
        self.agency, self.store, self.clock = agency, store, clock
        self.entitled = messages.Entitlement.of(policy, agency)
        self.feed, self.reporter = feed, reporter
        self.options = settings.options
        self.topics = settings.kafka.topics
        self.topic = self.topics.views(agency)
        self.budget = Budget(self.options.verify_rows_per_minute)
        self.next_step = random.randrange(DEFAULT_BUCKETS + 1)  # restarts do not favour low buckets
        self.ahead: Batch | None = None  # the next batch, read and decided while the last was taken
        self.writer: ThreadPoolExecutor | None = None  # takes a batch while the loop reads the next
        self.in_flight = 0  # sent, neither confirmed nor refused yet
        self.confirmed: list[tuple[int, int]] = []  # (partition, offset) confirmed, still in the outbox
        self.refused: list[str] = []  # what the broker refused to take, and why
        self.last_digest = 0.0
        self.applied = 0
        self.applied_at_digest = 0
        self.progress = Progress(f"copy-{agency}", stall_after_s=self.options.sla_s)
        self.positions: dict[int, int] = {}  # next offset per partition, as the store records them
        self.last_applied_at: datetime | None = None
        self.round_at = clock()  # when the loop last came round (a poll began or ended)
        self.counted = metrics.COPY_APPLIED.labels(agency)  # the agency's series, looked up once
        self.latency = metrics.APPLY_LATENCY.labels(agency)

    def start(self) -> None:
        """Re-send what a crash left unconfirmed, then read on from the store's own positions."""
        self._send_outbox()
        positions = self.store.positions()
        self.positions, self.last_applied_at = dict(positions), self.store.last_applied_at()
        self.feed.assign(self.topic, self.feed.partitions(self.topic), positions)
        self.publish_digest()

    def run(self, should_stop: Callable[[], bool]) -> None:
        self.start()
        try:
            while not should_stop():
                self.poll()
        finally:
            self.close()

    def poll(self) -> int:
        """One batch: take it, send its acknowledgements, re-verify within budget, digest when due.

        The batch is taken on the writer thread while this one reads and decides the next (decoding
        holds the interpreter; the database's own work and the broker's waits do not), so the two
        overlap; the poll returns once its batch is taken, as a poll that read no further would."""
        self.round_at = self.clock()
        batch, self.ahead = self.ahead or self._read(self.options.poll_s), None
        if batch.records:
            self._take_reading_ahead(batch)
        elif self.in_flight or self.confirmed:
            self._clear(wait=True)  # out of changes: every acknowledgement confirmed and cleared
        self._verify()
        caught_up = not batch.records and self.applied > self.applied_at_digest
        if caught_up or time.monotonic() - self.last_digest >= self.options.digest_interval_s:
            self.publish_digest()
        self.round_at = self.clock()
        return len(batch.records)

    def _read(self, wait_s: float) -> Batch:
        """The next batch (waiting at most `wait_s` for its first change), each message decided."""
        batch = Batch(self.feed.fetch(wait_s, self.options.batch))
        batch.items = [self._item(record, batch) for record in batch.records]
        return batch

    def _take_reading_ahead(self, batch: Batch) -> None:
        """`batch` taken on the writer thread while this one reads what is already fetched (no wait);
        the writer is always idle again when this returns, so nothing else ever shares the store."""
        if self.writer is None:
            self.writer = ThreadPoolExecutor(1, thread_name_prefix=f"copy-{self.agency}-writer")
        taking = self.writer.submit(self._take, batch)
        try:
            self.ahead = self._read(0.0)
        finally:
            positions = taking.result()
        self.feed.commit(self.topic, positions)

    def _take(self, batch: Batch) -> dict[int, int]:
        """The batch in one transaction; then what it must report, sent; the positions it reached."""
        batch.acks = messages.Acknowledgements(self.agency, self.clock())  # dated when it is taken
        outcomes = self.store.take(batch.items)
        taken, now, reports = [], time.time(), batch.reports
        for record, item, outcome in zip(batch.records, batch.items, outcomes, strict=True):
            self._note(item, outcome)
            if outcome is Applied.APPLIED and record.timestamp_ms > 0:
                self.latency.observe(max(0.0, now - record.timestamp_ms / 1000))
            if outcome is not Applied.REPEATED and (item.partition, item.offset) in reports:
                taken.append((item.partition, item.offset, reports[item.partition, item.offset]))
        applied = outcomes.count(Applied.APPLIED)
        if applied:
            self.last_applied_at = self.clock()
            self.counted.inc(applied)
        self._send(taken)
        self._clear(wait=self.in_flight > IN_FLIGHT_BATCHES * self.options.batch)
        positions, read = self.store.positions(), {r.partition for r in batch.records}
        self.positions.update(positions)
        self.progress.advance(handled=len(batch.records))
        return {p: o for p, o in positions.items() if p in read}

    def health(self) -> Health:
        """Progress against the view topic's end, behind the SLA when its freshness says stale, and
        stuck when the loop itself has not come round: blocked in a write (a database lock held by
        hand, seen), it fetches nothing, so the lag it last noted would look like no work at all."""
        positions, now = dict(self.positions), self.clock()
        lag = self.feed.lag(self.topic, positions)
        by_partition = {p: n for (_, p), n in lag.items()}
        fresh = freshness(positions, by_partition, self.last_applied_at, now, self.options.sla_s)
        stuck_s, limit = (now - self.round_at).total_seconds(), self.options.sla_s + self.options.poll_s
        stuck = (
            f"the sink's loop has not come round for {stuck_s:.0f} s (threshold {limit:.0f} s): "
            "not making progress"
        )
        reasons = [fresh.note if fresh.stale else None, stuck if stuck_s > limit else None]
        health = self.progress.judge(lag, behind="; ".join(r for r in reasons if r) or None)
        metrics.record(health, lag)
        return health

    def _item(self, record: Record, batch: Batch) -> Change | Refusal:
        """What to do with one message: a change to apply, or a refusal to record (and why)."""
        where = (record.topic, record.partition, record.offset)
        try:
            event: Event = serde.decode(record.value, *where)
        except ContractError as e:
            return self._refusal(record, batch, "undecodable", str(e))
        fault = messages.fault(event, self.entitled)
        if fault is not None:
            return self._refusal(record, batch, *fault)
        assert isinstance(event, ViewChanged)
        lid, partition, offset = event.envelope.listing_id, record.partition, record.offset
        return Change(event, partition, offset, partial(batch.ack, lid, partition, offset))

    def _refusal(self, record: Record, batch: Batch, code: str, reason: str) -> Refusal:
        where = Position(self.topic, record.partition, record.offset)
        refused = rejected(self.agency, where, code, reason, record.value, self.clock())
        log.warning("copy of %s refuses %s[%d]@%d: %s", self.agency, record.topic, record.partition,
                    record.offset, reason)  # fmt: skip
        encoded = serde.encode(refused)
        batch.reports[record.partition, record.offset] = Encoded.of(refused, encoded)
        return Refusal(record.partition, record.offset, encoded)

    def _note(self, item: Change | Refusal, outcome: Applied) -> None:
        if outcome is Applied.APPLIED:
            self.applied += 1
        elif outcome is Applied.OVERTAKEN and isinstance(item, Change):
            env = item.change.envelope
            log.info("copy of %s passed over %s v%d from %s: it knows a later version", self.agency,
                     env.listing_id, env.version, env.agency)  # fmt: skip

    def _send_outbox(self) -> None:
        """Send every acknowledgement or refusal a crash left kept, as kept (same bytes, same id)."""
        unsent = self.store.unsent_acks()
        self._send([(p, o, Encoded.of(serde.decode(data, "copy outbox"), data)) for p, o, data in unsent])
        self._clear(wait=True)

    def _send(self, reports: list[tuple[int, int, Encoded]]) -> None:
        """Send the very bytes kept in the store; each is forgotten there once the broker confirmed it."""
        applied_to = self.topics.copies_applied(self.agency)
        for partition, offset, report in reports:
            if report.name == messages.APPLIED:
                topic, key = applied_to, copy_key(self.agency, report.subject)
            else:
                topic, key = self.topics.rejected, report.subject
            self.reporter.send_encoded(topic, key, report, self._delivery(partition, offset))
        self.in_flight += len(reports)

    def _delivery(self, partition: int, offset: int) -> Callable[[KafkaError | None, object], None]:
        """What the producer calls once the broker confirmed, or refused, the report kept there."""

        def delivered(error: KafkaError | None, _: object) -> None:
            self.in_flight -= 1
            if error is None:
                self.confirmed.append((partition, offset))
            else:
                self.refused.append(f"partition {partition} offset {offset}: {error}")

        return delivered

    def _clear(self, wait: bool) -> None:
        """Forget in the store the reports the broker confirmed so far (`wait`: every one sent)."""
        if wait:
            self.reporter.flush()
        else:
            self.reporter.poll(0)
        if self.refused:
            first, count = self.refused[0], len(self.refused)
            raise BrokerUnavailable(
                f"the broker refused {count} reports of the copy of {self.agency} (kept: re-sent at the "
                f"next start), {first}"
            )
        confirmed, self.confirmed = self.confirmed, []
        if confirmed:
            self.store.acks_sent(confirmed)

    def _verify(self) -> None:
        """Rolling re-verification: the next buckets, as many as the budget allows now (one round at most)."""
        self.budget.refill()
        for _ in range(DEFAULT_BUCKETS + 1):
            if not self.budget.due():
                return
            step = self.next_step
            self.next_step = (step + 1) % (DEFAULT_BUCKETS + 1)
            found = self.store.verify(step if step < DEFAULT_BUCKETS else None)
            self.budget.spend(found.read)
            if found.rows or found.buckets:
                log.warning("copy of %s: running digest disagreed with its rows in buckets %s (%d rows "
                            "with a wrong bucket or leaf, e.g. %s): rebuilt from the rows", self.agency,
                            found.buckets, len(found.rows), found.rows[:3])  # fmt: skip

    def publish_digest(self) -> None:
        """The digest `take` keeps (no row read), which rolling verification keeps true to the rows.

        The positions go to the consumer group again with it: a batch's asynchronous commit can
        fail (a coordinator moving or loading), and an idle copy would otherwise never repeat it."""
        digest, positions = self.store.digest(), self.store.positions()
        event = messages.digest_of(self.agency, digest, positions, self.clock())
        self.feed.commit(self.topic, positions)
        self.reporter.send(self.topics.copies_digests(self.agency), self.agency, event, self._digest_sent)
        self.reporter.poll(0)
        self.last_digest = time.monotonic()
        self.applied_at_digest = self.applied

    def _digest_sent(self, error: KafkaError | None, _: object) -> None:
        """A digest the broker refused is only said: the next one, at most `digest_interval_s` later,
        stands for it (a digest is the copy's state then, not a change to keep)."""
        if error is not None:
            log.warning("copy of %s: its digest was not published (%s); the next one replaces it",
                        self.agency, error)  # fmt: skip

    def close(self) -> None:
        """Wait at most `CLOSE_WAIT_S` for the broker to confirm what was sent, forget in the store
        what it confirmed, then release the clients without waiting again. Nothing is lost: what the
        broker did not confirm stays kept in the store and the next start re-sends it, same bytes,
        same ids (`_send_outbox`); a broker that is down costs the close seconds, not minutes."""
        try:
            if self.writer is not None:
                self.writer.shutdown(wait=True)  # idle between polls: this only ends its thread
            self._settle()
        finally:
            try:
                self.reporter.close(0)  # anything still queued is kept in the store, or a digest
            except BrokerUnavailable as e:
                log.info("copy of %s closed its producer with messages unconfirmed: %s", self.agency, e)
            finally:
                self.feed.close()

    def _settle(self) -> None:
        with suppress(BrokerUnavailable):  # what stays unconfirmed is said below
            self.reporter.flush(CLOSE_WAIT_S)
        confirmed, self.confirmed = self.confirmed, []
        if confirmed:
            self.store.acks_sent(confirmed)
        if self.in_flight or self.refused:
            log.warning("copy of %s closes with %d reports (acknowledgements, refusals) the broker did not "
                        "confirm within %.0f s and %d it refused: kept in its store, re-sent at the next "
                        "start", self.agency, self.in_flight, CLOSE_WAIT_S, len(self.refused))  # fmt: skip
