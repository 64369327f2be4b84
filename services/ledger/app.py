"""The ledger's Faust worker, built by `build_app` from settings: no module-level app.

One agent reads every listing topic the policy names (an explicit list: Faust's
pattern subscription does not work, faust-streaming issue 62) and hands each batch to
`worker.Ledger.step`, which decides each message (`handler.handle`); three tables keep each
listing's entry, its held messages and the expiry index (`expiry`), recovered from their
changelogs after a crash. A timer publishes the expiry of the listings due, and asks (through
the internal `ledger-gaps` topic, so that the change happens on the listing's own partition,
in the second agent) for held messages that waited too long to be refused. Any failure in the
agents or the timer ends the process at once, loudly, so a supervisor restarts it: a worker
alive but idle is the failure to avoid.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from typing import Any, NoReturn

import faust

from services.core.ops import serve_ops
from services.ledger.layout import app_id, gaps_topic
from services.ledger.settings import LedgerSettings
from services.ledger.tables import ConfirmedTable
from services.ledger.worker import Ledger, exit_now, guarded

RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


def instance_id(settings: LedgerSettings) -> str | None:
    """This worker's static group membership id: a restarted worker gets its partitions back at
    once, instead of after the group waited out its dead predecessor's session. Two workers must
    not share one; two cannot share a data directory either, so host and directory name it."""
    if not settings.options.static_membership:
        return None
    if settings.options.instance_id:
        return settings.options.instance_id
    where = f"{socket.gethostname()}:{settings.options.data_dir.resolve()}"
    return f"{app_id(settings.kafka)}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


def faust_app(settings: LedgerSettings, name: str | None = None) -> faust.App:
    """The Faust app the worker runs in; under another `name` (its group), the benchmark's no-op agent."""
    kafka, options = settings.kafka, settings.options
    return faust.App(
        name or app_id(kafka),
        broker=";".join(f"kafka://{hp}" for hp in kafka.bootstrap_servers.split(",")),
        broker_credentials=kafka.connection.faust_credentials(),
        store=options.store,
        datadir=str(options.data_dir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        broker_commit_interval=options.commit_interval_s,
        broker_session_timeout=options.session_timeout_s,
        broker_heartbeat_interval=min(3.0, options.session_timeout_s / 3),
        consumer_group_instance_id=instance_id(settings) if name is None else None,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=options.linger_s,
        web_enabled=False,
        Table=ConfirmedTable,
    )


def build_app(
    settings: LedgerSettings, crash: Callable[[BaseException], NoReturn] = exit_now, ops: str | None = None
) -> faust.App:
    """The worker's app; with `ops` (HOST:PORT) it also serves the worker's /health and /metrics."""
    kafka, options = settings.kafka, settings.options
    app = faust_app(settings)
    worker = Ledger(app, settings, crash)
    source = app.topic(*sorted(worker.ctx.authors), **RAW)
    worker.gaps = app.topic(gaps_topic(kafka), **RAW)  # created by `layout.prepare` before the start

    @app.agent(source, name="ledger")
    async def ledger(stream: faust.StreamT[bytes]) -> None:
        manual = stream.noack()  # type: ignore[attr-defined]
        async for events in manual.noack_take(options.batch_size, within=options.batch_wait_s):
            await guarded(worker.step(events), crash)
            worker.confirm(events, manual.ack)

    @app.agent(worker.gaps, name="gaps")
    async def gaps(stream: faust.StreamT[bytes]) -> None:
        manual = stream.noack()  # type: ignore[attr-defined]
        async for event in manual.events():
            await guarded(worker.give_up(event), crash)
            worker.confirm([event], manual.ack)

    @app.timer(options.expiry_interval_s, name="expire")  # type: ignore[untyped-decorator]
    async def expire() -> None:
        await guarded(worker.tick(), crash)

    worker.listings.on_recover(worker.recovered)
    serve_ops(ops, worker.health)
    return app
