"""A live backbone for reconciler tests: the test plays the ledger, a real copy sink keeps civil
aviation's copy (SQLite or PostgreSQL) and a real `Runner` reconciles it, all on the real broker.
Principals and ACLs are provisioned as `accord backbone up` does: the sink runs as civil
aviation, the reconciler (and its lease) as the reconciler; the test itself as the super user."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from services.acl.principals import connection_of
from services.backbone import provision
from services.core.connection import KafkaConnection
from services.core.copystore import CopyStore, open_store
from services.core.copystore.probe import StoreProbe
from services.core.events import Event, Finding, ListingState
from services.core.kafka import EventProducer, decode_message, read_all
from services.core.listing import evolve
from services.core.policy import Policy
from services.core.settings import KafkaSettings
from services.core.topics import Topics
from services.core.views import ViewRow, project, view_change
from services.reconciler.board import Board
from services.reconciler.lease import Lease
from services.reconciler.runner import Runner, on_kafka
from services.reconciler.settings import ReconcilerSettings
from tests.integration.copies.support import PARTITIONS, make_topics, real_sink
from tests.support.factory import Ledgerbook, policy_with_keys

CA = "civil-aviation"
T = TypeVar("T")
FAST = ReconcilerSettings(
    listing_sla_s=1, revocation_sla_s=1, repair_sla_s=5, check_interval_s=0.2, antientropy_interval_s=0.5,
    deep_interval_s=600, verify_cycle_s=2.0,
)  # fmt: skip


def wait_for(what: str, found: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"waited {timeout:.0f} s for {what}")


@dataclass
class Live:
    connection: KafkaConnection  # the super user's
    credentials: Path  # the provisioned principals' passwords
    topics: Topics
    policy: Policy
    book: Ledgerbook
    url: str
    store: CopyStore
    producer: EventProducer
    states: dict[str, ListingState] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    logs: dict[str, list[str]] = field(default_factory=dict)
    stops: list[threading.Event] = field(default_factory=list)  # of reconcilers stopped on their own

    def as_(self, role: str) -> KafkaConnection:
        """The connection of `role` (an agency or a service), as provisioned."""
        return connection_of(self.connection, f"{self.topics.namespace}{role}", self.credentials)

    def record(self, event: Event) -> None:
        """What the ledger does: the listing's new state on `ledger`, its view change on `views.<CA>`."""
        lid = event.envelope.listing_id
        before = self.states.get(lid)
        after = evolve(before, event)  # type: ignore[arg-type]
        self.states[lid] = after
        self.producer.send_sync(self.topics.ledger, lid, after)
        change = view_change(before, after, CA, self.policy, datetime.now(UTC))
        if change is not None:
            self.producer.send_sync(self.topics.views(CA), lid, change)

    def expected(self) -> dict[str, ViewRow]:
        rows = {lid: project(state, CA, self.policy) for lid, state in self.states.items()}
        return {lid: row for lid, row in rows.items() if row is not None}

    def rows(self) -> dict[str, ViewRow]:
        return {row.listing_id: row for row in self.store.rows()}

    def findings(self) -> list[Finding]:
        return [e for m in read_all(self.connection, [self.topics.findings])
                if isinstance(e := decode_message(m).event, Finding)]  # fmt: skip

    def start_sink(self, halt: threading.Event | None = None, **options: float) -> None:
        """Civil aviation's sink, until the world closes (or `halt` is set: the sink alone stops)."""
        store = open_store(self.url, CA)
        sink = real_sink(store, self.as_(CA), self.topics.namespace, **options)
        stop = halt or self.stop
        if halt is not None:
            self.stops.append(halt)
        self._thread(lambda: _closing(store, lambda: sink.run(stop.is_set)))

    def start_reconciler(
        self,
        name: str = "r1",
        config: ReconcilerSettings = FAST,
        lease: bool = False,
        stop: threading.Event | None = None,
        log: Callable[[str], None] | None = None,
        board: Board | None = None,
        snapshots: Path | None = None,
    ) -> Runner:
        """A reconciler in a thread of this process (its snapshot under `snapshots`; None: in memory)."""
        kafka = KafkaSettings.of(self.as_("reconciler"), namespace=self.topics.namespace)
        probe = StoreProbe(open_store(self.url, CA))
        held = Lease(kafka.connection, self.topics.ledger, config.lease_session_s) if lease else None
        lines = self.logs.setdefault(name, [])
        runner = on_kafka(
            kafka, config, self.policy, {CA: probe}, log or lines.append, held, board, snapshots
        )
        halt = stop or self.stop
        self.stops.append(halt)

        def run() -> None:
            try:
                runner.run(halt)
            finally:
                probe.close()
                if held is not None:
                    held.close()

        self._thread(run)
        return runner

    def _thread(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        for each in self.stops:
            each.set()
        for thread in self.threads:
            thread.join(30)
        self.producer.close()
        self.store.close()


def _closing(store: CopyStore, run: Callable[[], None]) -> None:
    try:
        run()
    finally:
        store.close()


def live(admin: KafkaConnection, namespace: str, url: str, folder: Path) -> Generator[Live, None, None]:
    policy, keystore = policy_with_keys(folder / "keys")
    topics = make_topics(admin, namespace)
    layout = KafkaSettings.of(admin, namespace=namespace, partitions=PARTITIONS, replication_factor=1)
    provision(admin, layout, folder / "credentials")
    world = Live(admin, folder / "credentials", topics, policy, Ledgerbook(keystore), url,
                 open_store(url, CA), EventProducer(admin))  # fmt: skip
    try:
        yield world
    finally:
        world.close()
