"""The ledger worker's steps (`Ledger`): a batch of messages, a give-up, a tick; `app` wires them to
Faust's agents, timer and tables.

The agent takes messages in batches and handles them one by one, in order. A batch's table writes
wait in memory (`tables`): every read sees them, but the store and the changelogs get them only
once the broker confirmed the batch's decisions, sent through the ledger's own producer (`outbox`);
the batch is acked (and Faust commits only acked offsets) once those records are confirmed too. So
the tables are never ahead of the decisions. A failed write crashes the worker; the batch, never
committed, is processed again on restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

import faust
from aiokafka.errors import IllegalStateError
from confluent_kafka import TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faust.streams import _current_event
from prometheus_client import Counter

from services.core import cloudevent, metrics
from services.core.events import ListingState, Rejected
from services.core.health import Health, Lag, Progress
from services.core.kafka import end_offsets
from services.core.policy import Policy
from services.core.topics import BACKBONE
from services.core.views import LIVE
from services.ledger.expiry import Due, ExpiryIndex, expiry_of, ordered
from services.ledger.handler import Context, Handled, Outbound, Read, give_up, handle, overdue
from services.ledger.layout import app_id
from services.ledger.outbox import Deliveries, Outbox
from services.ledger.record import DecodedEntries, Inbound, decode_held, encode_held
from services.ledger.refetch import committed, read_range
from services.ledger.seals import Seals
from services.ledger.settings import LedgerSettings
from services.ledger.tables import CURRENT, Batch, ConfirmedTable, current, rocksdb_options

log = logging.getLogger("accord.ledger")
HEALTH_FILE = "health.json"
LAG_EVERY_S = 2.0  # how often the timer measures the input still unread, for health and metrics
POSITION = b"\x00position\x00"  # listings-table key prefix: next offset of each source partition
EXIT_HANDLER_FAILED = 70  # EX_SOFTWARE: the supervisor restarts the worker; it resumes from its commits


def exit_now(exc: BaseException) -> NoReturn:
    """End the worker without ceremony: uncommitted input is simply read again on restart."""
    log.critical("ledger handler failed; stopping the worker\n%s", "".join(traceback.format_exception(exc)))
    logging.shutdown()
    os._exit(EXIT_HANDLER_FAILED)


async def guarded(step: Awaitable[None], crash: Callable[[BaseException], NoReturn]) -> None:
    """Run one step of the agent or timer; any exception crashes the worker instead of the step.

    Faust's supervisor would restart a crashed agent past the message that broke it, or leave
    it dead while the worker looks healthy (faust issue 175); neither may happen to the ledger.
    """
    try:
        await step
    except Exception as e:
        crash(e)


def write_report(health: Health, path: Path) -> None:
    """The last verdict, for `accord ledger status` (the ops endpoint answers it live)."""
    body = {**health.body(), "written_at": datetime.now(UTC).isoformat()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(body, indent=1))
    partial.replace(path)


def trust(settings: LedgerSettings) -> tuple[Policy, Ed25519PrivateKey]:
    """The policy with every agency's trusted public key, and the backbone's own signing key."""
    return settings.keys.policy_with_keys(), settings.keys.backbone_key()


class Ledger:
    """The worker's state and steps; `build_app` wires them to Faust's agents, timer and tables."""

    def __init__(
        self, app: faust.App, settings: LedgerSettings, crash: Callable[[BaseException], NoReturn] = exit_now
    ) -> None:
        self.app, self.settings, self.crash = app, settings, crash
        policy, self.backbone_key = trust(settings)
        partitions = settings.kafka.partitions
        self.ctx = Context(policy, settings.kafka.topics, partitions)
        self.listings = self._table("listings", partitions)
        self.held = self._table("held", partitions)
        self.expiring = self._table("expiring", partitions)  # the expiry index (see expiry)
        self.entries = DecodedEntries()  # the listings touched last, decoded (see record)
        self.index = ExpiryIndex(self.expiring, lambda: ordered(self.expiring), partitions)
        self.source = cloudevent.source(settings.kafka.namespace, "ledger")  # of every message it writes
        self.progress = Progress("ledger", settings.options.stall_after_s)
        self.positions: dict[tuple[str, int], int] = {}  # next offset of each source partition handled
        self.lag: Lag | None = {}  # the last measurement of the input still unread (None: unknown)
        self.lag_at = 0.0
        self.outbox = Outbox(settings.kafka.connection, settings.options.linger_s, self.source)
        self.seals = Seals(settings.options.seal_threads)
        self.listings.outbox = self.held.outbox = self.expiring.outbox = self.outbox
        self.background: set[asyncio.Task[None]] = set()  # tasks the worker must keep a reference to
        self.last: Batch | None = None  # the batch begun last: the next one flushes after it
        self.gaps_asked: dict[bytes, datetime] = {}
        self.gaps: faust.TopicT | None = None  # the internal topic of give-up requests (build_app)
        self.ready_at: float | None = None  # monotonic time of the last completed recovery
        self.catch_up: Lag | None = None  # the input's ends first measured after it: see `caught_up`
        self.handled_at = self.watched_at = 0.0

    def _table(self, name: str, partitions: int) -> ConfirmedTable:
        options = rocksdb_options(self.settings.options.table_memory_mb, partitions)
        table = self.app.Table(name, partitions=partitions, key_type=bytes, value_type=bytes, options=options)
        assert isinstance(table, ConfirmedTable)
        return table

    def begin(self) -> Batch:
        """A new batch for the current task: its sends and table writes, flushed after the last one's."""
        batch = self.last = Batch(self.last)
        CURRENT.set(batch)
        return batch

    def send(self, outbound: Outbound, deliveries: Deliveries) -> None:
        """Through the ledger's own producer (see outbox), counted in `deliveries` (a batch's
        decisions, whose flush waits for them)."""
        self.outbox.send(outbound.topic, outbound.key, outbound.event, deliveries, outbound.encoded)

    async def step(self, events: Sequence[faust.EventT[bytes]]) -> None:
        """Process a batch of messages in order, first re-reading any that Faust skipped (see refetch).

        Each source partition's next offset is written to the table once per batch, not per message:
        the batch is acked only when all its writes are confirmed, so a crash in the middle re-reads
        it whole, and what was already applied is re-stated as a duplicate at the same position."""
        self.begin()
        positions: dict[bytes, tuple[int, faust.EventT[bytes]]] = {}
        messages = [_consumed(event) for event in events]
        handled = applied = 0
        ahead = self.seals.start(messages, self.ctx)  # their signatures checked in threads meanwhile
        for event, msg, opened in zip(events, messages, ahead, strict=True):
            _current_event.set(weakref.ref(event))  # Faust's tables store a write in its event's partition
            position = POSITION + f"{msg.topic}:{msg.partition}".encode()
            expected = (
                positions[position][0]
                if position in positions
                else int(self.listings.stored(position) or b"0")
            )
            if msg.offset > expected:
                for earlier in await self.skipped(msg, expected):
                    handled, applied = handled + 1, applied + await self.process(earlier)
            handled, applied = handled + 1, applied + await self.process(msg, await opened.read())
            positions[position] = (max(expected, msg.offset + 1), event)
            self.positions[(msg.topic, msg.partition)] = max(expected, msg.offset + 1)
        for position, (offset, event) in positions.items():
            _current_event.set(weakref.ref(event))
            self.listings[position] = str(offset).encode()
        self.handled_at = time.monotonic()
        self.progress.advance(handled=handled, applied=applied, batches=1)  # once a batch: a lock and a clock

    def confirm(
        self, events: Sequence[faust.EventT[bytes]], ack: Callable[[faust.EventT[bytes]], Awaitable[Any]]
    ) -> None:
        """Ack `events` once the broker confirmed every decision they caused, then their tables'
        changelog records, and the store holds them (`tables.Batch.flush`); crash if a write failed."""
        batch = current()

        async def confirmed() -> None:
            await batch.flush()
            for event in events:
                if event.message.partition not in batch.unsent:  # else read again by its new owner
                    await ack(event)

        self.in_background(confirmed())

    def in_background(self, step: Awaitable[None]) -> None:
        """Run `step` as a task of its own, kept referenced until done; its failure crashes the worker."""
        task = asyncio.ensure_future(guarded(step, self.crash))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def skipped(self, msg: Inbound, expected: int) -> list[Inbound]:
        log.warning(
            "re-reading %s[%d] %d..%d: skipped by Faust", msg.topic, msg.partition, expected, msg.offset - 1
        )
        connection = self.settings.kafka.connection
        missed = await asyncio.to_thread(
            read_range, connection, msg.topic, msg.partition, expected, msg.offset
        )
        self.progress.count(refetched=len(missed))
        return missed

    async def process(self, msg: Inbound, read: Read | None = None) -> int:
        """Decide `msg` (`read`: opened ahead, its signature checked; else here), write, send; how
        many events it applied (held ones released included)."""
        key = msg.key or b""
        waiting = decode_held(self.held.stored(key))
        entry = None if key.startswith(POSITION) else self.entries.decode(key, self.listings.stored(key))
        outcome = handle(msg, entry, waiting, self.ctx, read)
        if outcome.applied and outcome.entry is not None:
            data = outcome.entry.encode()
            self.listings[key] = data
            self.entries.remember(key, data, outcome.entry)
        if not key.startswith(POSITION):
            after = outcome.entry.state if outcome.entry else None
            self.index.follow(entry.state if entry else None, after, bool(outcome.applied))
            self.index.tidy(msg.partition, self.state_of)
        await self.emit(key, waiting, outcome)
        _count(outcome)
        return outcome.applied

    async def emit(self, key: bytes, waiting: list[Inbound], outcome: Handled) -> None:
        """Write the listing's held messages if they changed, and send what the outcome publishes."""
        if outcome.held != waiting:
            _write_held(self.held, key, outcome.held)
        decisions = current().decisions
        for outbound in outcome.out:
            self.send(outbound, decisions)

    async def tick(self) -> None:
        """Ask for the soonest due expiries (at most `expiries_per_tick`) and every overdue gap,
        then report progress. A backlog of due listings drains over the following ticks."""
        now = self.settings.options.now()
        if self.settled() and self.caught_up():
            await self.expire(self.index.due(now, self.settings.options.expiries_per_tick), now)
        await self.check_held(datetime.now(UTC))
        await self.watch(time.monotonic())
        self.progress.note(live=self.index.size())
        self.measure_lag(time.monotonic())
        write_report(self.health(), self.settings.options.data_dir / HEALTH_FILE)

    def settled(self) -> bool:
        """Recovered and not rebalancing: only then do the tables hold what their changelogs say, so
        that an index key and the entry it is checked against are of one moment."""
        recovering = self.app.rebalancing or getattr(self.app, "in_recovery", False)
        return self.ready_at is not None and not recovering

    def caught_up(self) -> bool:
        """Whether the worker has handled its input up to where it ended when first measured after the
        last recovery. Input read again after a restart may hold decisions already published but not
        yet in the tables (they are never ahead of them): a correction that moved a listing's expiry
        later. Expiring before it is read again would end the listing at the time it no longer has."""
        if self.catch_up is None:
            return False
        return all(self.positions.get(tp, 0) >= end for tp, end in self.catch_up.items())

    def measure_lag(self, now: float) -> None:
        """Every `LAG_EVERY_S`, in a task of its own (the broker's answer never delays the timer): how
        much of its input (the partitions assigned to this worker: not another's) it has not handled."""
        if now - self.lag_at < LAG_EVERY_S:
            return
        self.lag_at = now

        async def measure() -> None:
            recovery = self.ready_at
            mine = [tp for tp in self.app.consumer.assignment() if tp.topic in self.ctx.authors]
            try:  # one request on Faust's own connection, answered in its consumer's thread
                ends = await self.app.consumer.highwaters(*mine) if mine else {}
            except Exception as e:  # a measurement never stops the worker: its health says "unknown"
                log.warning("could not measure the ledger's lag: %r", e)
                self.lag = None
                return
            at = self.positions
            self.lag = {(tp.topic, tp.partition): max(0, end - at.get((tp.topic, tp.partition), 0))
                        for tp, end in ends.items()}  # fmt: skip
            if self.catch_up is None and recovery is not None and recovery == self.ready_at:
                self.catch_up = {(tp.topic, tp.partition): end for tp, end in ends.items()}

        self.in_background(measure())

    def health(self) -> Health:
        """Progress against the last lag measured; a measurement older than a few rounds is unknown."""
        fresh = time.monotonic() - self.lag_at <= 3 * LAG_EVERY_S + 10
        lag = self.lag if fresh else None
        health = self.progress.judge(lag)
        metrics.record(health, lag)
        return health

    async def expire(self, due: list[Due], now: datetime) -> None:
        """Publish the expiry of each listing still due and wait for the broker, once for all; only
        then may the index let go. Sealing (Avro and Ed25519, ~0.2 ms each) runs in a thread, so the
        agent keeps deciding meanwhile."""
        states = [state for d in due if (state := self.still_due(d)) is not None]
        expiries = await asyncio.to_thread(lambda: [expiry_of(s, now, self.backbone_key) for s in states])
        topic, sent = self.ctx.topics.listings(BACKBONE), Deliveries()
        for expiry in expiries:
            self.send(Outbound(topic, expiry.envelope.listing_id, expiry), sent)
        await sent.confirmed()
        for expired in expiries:
            self.index.written(expired.envelope.listing_id)
        self.progress.count(expiries_asked=len(expiries))
        metrics.EXPIRIES.inc(len(expiries))

    def still_due(self, due: Due) -> ListingState | None:
        """The listing's state if it is still live and expires when indexed; else the key is stale.

        The index's scan reads the store, a flush behind the tables' pending writes: a key just
        written is found a tick later, and a key deleted but still stored is checked here against
        the entry, which `state_of` reads through the pending writes."""
        expires_at, listing_id = due
        state = self.state_of(listing_id)
        if state is None or state.status not in LIVE or state.expires_at != expires_at:
            self.index.stale(expires_at, listing_id)
            return None
        return state

    def state_of(self, listing_id: str) -> ListingState | None:
        key = listing_id.encode()
        entry = self.entries.decode(key, self.listings.get(key))
        return entry.state if entry else None

    async def check_held(self, now: datetime) -> None:
        """Report what is held and ask, once per limit, for overdue held messages to be refused.

        The held table is empty but for gaps, so reading it whole each tick is cheap. The scan reads
        the store, a flush behind the pending writes: a gap is reported a flush late, and a give-up
        asked for messages applied meanwhile refuses nothing (`give_up` reads through them)."""
        limit = timedelta(seconds=self.settings.options.hold_limit_s)
        held, oldest = {}, timedelta(0)
        for key, value in list(self.held.items()):
            messages = decode_held(value)
            if not messages:
                continue
            held[key.decode(errors="replace")] = len(messages)
            oldest = max(oldest, *(now - m.timestamp for m in messages))
            asked = self.gaps_asked.get(key)
            if overdue(messages, now, limit) and (asked is None or now - asked > limit):
                assert self.gaps is not None
                await (await self.gaps.send(key=key, value=now.isoformat().encode()))
                self.gaps_asked[key] = now
        self.progress.note(held=held, held_oldest_s=round(oldest.total_seconds(), 1))

    async def give_up(self, event: faust.EventT[bytes]) -> None:
        """Refuse the overdue held messages of one listing (a request from `check_held`)."""
        self.begin()
        key, now = event.message.key or b"", datetime.fromisoformat((event.message.value or b"").decode())
        held = decode_held(self.held.get(key))
        outcome = give_up(held, now, timedelta(seconds=self.settings.options.hold_limit_s), self.ctx)
        await self.emit(key, held, outcome)
        self.progress.count(gaps_given_up=len(held) - len(outcome.held))
        _refusals(outcome)

    async def watch(self, now: float) -> None:
        """Seek back any source partition whose log runs ahead of what the ledger handled while it idles.

        faust-streaming can lose a fetched message around recovery (see refetch): when a later
        message follows, `step` re-reads the gap; when none does, the worker would sit idle with
        the messages unread, alive and healthy-looking. After `stall_after_s` without handling
        anything, each such partition is resumed and sought back to the ledger's own position, or
        to the group's committed offset where that is earlier: a batch whose table writes were
        confirmed but whose own writes failed was never committed, and may not be re-delivered."""
        stall_after = self.settings.options.stall_after_s
        if self.ready_at is None or now - max(self.ready_at, self.handled_at, self.watched_at) < stall_after:
            return
        self.watched_at = now
        assigned = [tp for tp in self.app.consumer.assignment() if tp.topic in self.ctx.authors]
        if not assigned:
            return
        connection, topics = self.settings.kafka.connection, sorted({tp.topic for tp in assigned})
        parts = [TopicPartition(tp.topic, tp.partition) for tp in assigned]
        ends = await asyncio.to_thread(end_offsets, connection, topics)
        commits = await asyncio.to_thread(committed, connection, app_id(self.settings.kafka), parts)
        for tp, part in zip(assigned, parts, strict=True):
            if tp not in self.app.consumer.assignment():  # a rebalance took it while we asked the broker
                continue
            own = int(self.listings.get(POSITION + f"{tp.topic}:{tp.partition}".encode(), b"0"))
            expected = min(own, commits.get(part, 0))
            waiting = ends.get(part, 0) - expected
            if waiting > 0:
                log.warning(
                    "%s[%d]: %d messages from %d unread while idle: seeking back", *tp, waiting, expected
                )
                try:
                    self.app.consumer.resume_partitions({tp})
                    await self.app.consumer.seek(tp, expected)
                except IllegalStateError:  # taken by a rebalance meanwhile: its next owner reads it
                    log.info("%s[%d]: no longer assigned, not sought back", *tp)
                    continue
                self.progress.count(reseeks=1)

    async def recovered(self) -> None:
        """After start and each rebalance: where the recovered table says each partition is.

        Nothing else to rebuild: the expiry index is a table, recovered with its partitions."""
        self.ready_at = time.monotonic()
        self.catch_up, self.lag_at = None, 0.0  # measured on the next tick: expiries wait for it
        for tp in self.app.consumer.assignment():
            if tp.topic in self.ctx.authors:
                stored = self.listings.get(POSITION + f"{tp.topic}:{tp.partition}".encode(), b"0")
                self.positions[(tp.topic, tp.partition)] = int(stored)
        log.warning("ledger ready: about %d live listings in its expiry index", self.index.size())


def _consumed(event: faust.EventT[bytes]) -> Inbound:
    """The message Faust delivered, as the handler and the `held` table take it."""
    message = event.message
    return Inbound(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        payload=message.value,
        timestamp=datetime.fromtimestamp(message.timestamp, UTC),
    )


def _write_held(held: faust.types.TableT[bytes, bytes], key: bytes, messages: list[Inbound]) -> None:
    if messages:
        held[key] = encode_held(messages)
    elif key in held:
        del held[key]


def _count(outcome: Handled) -> None:
    """What became of one message handled, for the metrics."""
    refused = _refusals(outcome)
    kind = "admitted" if outcome.applied else "refused" if refused else "held" if outcome.held else "ignored"
    _series(metrics.EVENTS_HANDLED, kind).inc()


def _refusals(outcome: Handled) -> int:
    """Count the refusals an outcome publishes, by reason code; how many there are."""
    refused = [o.event for o in outcome.out if isinstance(o.event, Rejected)]
    for event in refused:
        _series(metrics.EVENTS_REFUSED, event.reason_code).inc()
    return len(refused)


@cache
def _series(counter: Counter, label: str) -> Counter:
    """The ledger's series of `counter` for `label`, looked up once (`labels` takes a lock and
    checks its labels: 3 of the 4 µs of counting one event)."""
    return counter.labels("ledger", label)
