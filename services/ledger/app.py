"""The ledger's Faust worker, built by `build_app` from settings: no module-level app.

One agent reads every listing topic the policy names (an explicit list: Faust's
pattern subscription does not work, faust-streaming issue 62) and hands each message
to `handler.handle`; two tables keep each listing's entry and its held messages,
recovered from their changelogs after a crash. A timer publishes the expiry of every
listing that is due. Any failure in the agent or the timer ends the process at once,
loudly, so a supervisor restarts it: a worker alive but idle is the failure to avoid.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import faust
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.core import serde
from services.core.kafka import headers_of
from services.core.policy import Policy
from services.core.topics import BACKBONE
from services.ledger.expiry import ExpiryIndex, expiry_of
from services.ledger.handler import Context, Outbound, handle
from services.ledger.record import Entry, Inbound, decode_held, encode_held
from services.ledger.refetch import read_range
from services.ledger.settings import LedgerSettings

log = logging.getLogger("accord.ledger")
HEALTH_FILE = "health.json"
POSITION = b"\x00position\x00"  # listings-table key prefix: next offset of each source partition
EXIT_HANDLER_FAILED = 70  # EX_SOFTWARE: the supervisor restarts the worker; it resumes from its commits
RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


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


@dataclass
class Progress:
    """What health means for the ledger: messages handled and when, not the process being up.

    Written to `<data-dir>/health.json` on every expiry tick; `accord ledger status` reads it.
    """

    handled: int = 0
    applied: int = 0
    last_at: datetime | None = None
    expiries_asked: int = 0
    refetched: int = 0
    live: int = 0
    held: dict[str, int] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        body = {**asdict(self), "last_at": self.last_at.isoformat() if self.last_at else None}
        body["written_at"] = datetime.now(UTC).isoformat()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(body, indent=1))
        partial.replace(path)


def trust(settings: LedgerSettings) -> tuple[Policy, Ed25519PrivateKey]:
    """The policy with every agency's trusted public key, and the backbone's own signing key."""
    return settings.keys.policy_with_keys(), settings.keys.backbone_key()


class Ledger:
    """The worker's state and steps; `build_app` wires them to Faust's agent, timer and tables."""

    def __init__(self, app: faust.App, settings: LedgerSettings) -> None:
        self.app, self.settings = app, settings
        policy, self.backbone_key = trust(settings)
        self.ctx = Context(policy, settings.kafka.topics)
        partitions = settings.kafka.partitions
        self.listings = app.Table("listings", partitions=partitions, key_type=bytes, value_type=bytes)
        self.held = app.Table("held", partitions=partitions, key_type=bytes, value_type=bytes)
        self.index = ExpiryIndex()
        self.progress = Progress()

    async def send(self, outbound: Outbound) -> None:
        """Straight to the producer: Faust's channel layer costs more than the ledger's own work.

        It is the producer Faust flushes before it commits offsets, so a committed input still
        implies that everything it caused was written."""
        headers = [(name, value) for name, value in headers_of(outbound.event) if isinstance(value, bytes)]
        value = serde.encode(outbound.event)
        await self.app.producer.send(outbound.topic, outbound.key.encode(), value, None, None, headers)

    async def step(self, event: faust.EventT[bytes]) -> None:
        """Process the message, first re-reading any that Faust skipped before it (see refetch)."""
        msg = _inbound(event)
        position = POSITION + f"{msg.topic}:{msg.partition}".encode()
        expected = int(self.listings.get(position, b"0"))
        if msg.offset > expected:
            for earlier in await self.skipped(msg, expected):
                await self.process(earlier)
        await self.process(msg)
        self.listings[position] = str(max(expected, msg.offset + 1)).encode()

    async def skipped(self, msg: Inbound, expected: int) -> list[Inbound]:
        log.warning(
            "re-reading %s[%d] %d..%d: skipped by Faust", msg.topic, msg.partition, expected, msg.offset - 1
        )
        connection = self.settings.kafka.connection
        missed = await asyncio.to_thread(
            read_range, connection, msg.topic, msg.partition, expected, msg.offset
        )
        self.progress.refetched += len(missed)
        return missed

    async def process(self, msg: Inbound) -> None:
        key = msg.key or b""
        waiting = decode_held(self.held.get(key))
        entry = None if key.startswith(POSITION) else Entry.decode(self.listings.get(key))
        outcome = handle(msg, entry, waiting, self.ctx)
        if outcome.applied and outcome.entry is not None:
            self.listings[key] = outcome.entry.encode()
            self.index.track(outcome.entry.state)
        if outcome.held != waiting:
            _write_held(self.held, key, outcome.held)
        for outbound in outcome.out:
            await self.send(outbound)
        _count(self.progress, outcome.applied, key, len(outcome.held))

    async def tick(self) -> None:
        """Ask for the expiry of every listing that is due, then report progress."""
        now = self.settings.options.now()
        for listing_id in self.index.due(now):
            entry = Entry.decode(self.listings.get(listing_id.encode()))
            if entry is not None and entry.state.expires_at <= now:
                expired = expiry_of(entry.state, now, self.backbone_key)
                await self.send(Outbound(self.ctx.topics.listings(BACKBONE), listing_id, expired))
                self.progress.expiries_asked += 1
        self.progress.live = len(self.index)
        self.progress.write(self.settings.options.data_dir / HEALTH_FILE)

    async def reindex(self) -> None:
        """Rebuild the expiry index from the recovered table (after start and each rebalance)."""
        self.index.clear()
        for key, value in self.listings.items():
            entry = None if key.startswith(POSITION) else Entry.decode(value)
            if entry is not None:
                self.index.track(entry.state)
        log.warning("ledger ready: %d live listings indexed for expiry", len(self.index))


def build_app(settings: LedgerSettings, crash: Callable[[BaseException], NoReturn] = exit_now) -> faust.App:
    kafka, options = settings.kafka, settings.options
    app = faust.App(
        f"{kafka.namespace}ledger",
        broker=";".join(f"kafka://{hp}" for hp in kafka.bootstrap_servers.split(",")),
        broker_credentials=kafka.connection.faust_credentials(),
        store=options.store,
        datadir=str(options.data_dir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        broker_commit_interval=options.commit_interval_s,
        broker_session_timeout=options.session_timeout_s,
        broker_heartbeat_interval=min(3.0, options.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
    )
    worker = Ledger(app, settings)
    source = app.topic(*sorted(worker.ctx.authors), **RAW)

    @app.agent(source, name="ledger")
    async def ledger(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await guarded(worker.step(event), crash)

    @app.timer(options.expiry_interval_s, name="expire")  # type: ignore[untyped-decorator]
    async def expire() -> None:
        await guarded(worker.tick(), crash)

    worker.listings.on_recover(worker.reindex)
    return app


def _inbound(event: faust.EventT[bytes]) -> Inbound:
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


def _count(progress: Progress, applied: int, key: bytes, held: int) -> None:
    progress.handled += 1
    progress.applied += applied
    progress.last_at = datetime.now(UTC)
    listing = key.decode(errors="replace")
    if held:
        progress.held[listing] = held
    else:
        progress.held.pop(listing, None)
