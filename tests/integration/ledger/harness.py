"""A backbone for tests and benchmarks: topics, a ledger worker and copy sinks as real processes.

Processes are started with `sys.executable -m services ...` (the `accord` command line),
each in its own session with its output in a log file, and stopped by pid, never by
name; on a secured broker the ledger and each copy run as their own principals, provisioned
as `accord backbone up` provisions them. Expected views are computed here independently of
the ledger: the test's own events folded with `listing.evolve` and projected with `views.project`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from services.acl.principals import connection_of
from services.backbone import provision
from services.core.connection import KafkaConnection
from services.core.copystore import Applied, open_store
from services.core.copystore.port import judge
from services.core.crypto import Keystore
from services.core.events import CopyApplied, Envelope, Event, ListingExpired, ListingState, ViewChanged
from services.core.kafka import EventProducer, create_topics, decode_message, end_offsets, read_all
from services.core.listing import evolve
from services.core.policy import Policy
from services.core.settings import KafkaSettings
from services.core.topics import BACKBONE, Topics
from services.core.views import ViewRow, project
from tests.support.factory import Ledgerbook, policy_with_keys, trust_env

REPO = Path(__file__).resolve().parents[3]
PARTITIONS = 3
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.25) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Backbone:
    """Topics of one namespace, the keys, and the processes started for them."""

    connection: KafkaConnection
    namespace: str
    folder: Path
    policy: Policy = field(init=False)
    keystore: Keystore = field(init=False)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.policy, self.keystore = policy_with_keys(self.folder / "keys")
        self.topics = Topics(self.namespace)
        self.producer = EventProducer(self.connection)
        specs = self.topics.specs(self.policy.issuers, self.policy.enforcers)
        create_topics(self.connection, specs, PARTITIONS, 1)
        self.credentials = self._provision()

    def _provision(self) -> Path | None:
        """Principals and ACLs of this namespace, on a broker that authenticates (else None)."""
        if not self.connection.uses_sasl:
            return None
        layout = KafkaSettings.of(
            self.connection, namespace=self.namespace, partitions=PARTITIONS, replication_factor=1
        )
        provision(self.connection, layout, self.folder / "credentials")
        return self.folder / "credentials"

    def connection_as(self, role: str) -> KafkaConnection:
        """How `role` (an agency or a service) connects: its own principal, or the admin's
        connection on a broker that does not authenticate."""
        if self.credentials is None:
            return self.connection
        return connection_of(self.connection, f"{self.namespace}{role}", self.credentials)

    def as_(self, role: str) -> dict[str, str]:
        """The environment of a process running as `role` (an agency or a service)."""
        return self.connection_as(role).environment() if self.credentials is not None else {}

    def book(self) -> Ledgerbook:
        """A ledgerbook whose listings took effect yesterday and run for a year from now on."""
        return Ledgerbook(self.keystore, now=datetime.now(UTC) - timedelta(days=1))

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(REPO),
            **self.connection.environment(),
            "ACCORD_NAMESPACE": self.namespace,
            "ACCORD_PARTITIONS": str(PARTITIONS),
            **trust_env(self.keystore, self.policy),
            "ACCORD_LEDGER_DATA_DIR": str(self.folder / "ledger"),
            "ACCORD_LEDGER_EXPIRY_INTERVAL_S": "0.5",
            "ACCORD_LEDGER_COMMIT_INTERVAL_S": "0.5",
            "ACCORD_LEDGER_SESSION_TIMEOUT_S": "6",
            "ACCORD_COPY_DIGEST_INTERVAL_S": "2",
            "ACCORD_COPY_VERIFY_ROWS_PER_MINUTE": "300000",
            **extra,
        }

    # --- processes ---------------------------------------------------------------------

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "services", *args],
            cwd=self.folder, env=self.env(**env), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.processes[name] = process
        return process

    def start_ledger(
        self, store: str = "memory://", name: str = "ledger", **env: str
    ) -> subprocess.Popen[bytes]:
        """A ledger worker, as the ledger's own principal, its tables in `<folder>/<name>` (several
        workers of one group each have their own); `env` adds its settings."""
        where = {"ACCORD_LEDGER_DATA_DIR": str(self.folder / name), "ACCORD_LEDGER_STORE": store}
        return self.start(name, ["ledger", "run"], **where, **self.as_("ledger"), **env)

    def start_copy(self, agency: str, url: str, **env: str) -> subprocess.Popen[bytes]:
        """A copy sink of `agency` into `url`, as the agency's principal; `env` adds its settings."""
        args = ["copy", "run", "--agency", agency, "--store", url]
        return self.start(f"copy-{agency}", args, **self.as_(agency), **env)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            os.kill(process.pid, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.folder.glob("*.log")
        )

    def assert_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        assert not dead, f"processes exited {dead}\n{self.logs()}"

    # --- data ------------------------------------------------------------------------

    def publish(self, events: Iterable[Event]) -> None:
        for event in events:
            self.producer.send(self.topics.listings(event.envelope.agency), event.envelope.listing_id, event)
            self.events.append(event)
        self.producer.flush()

    def count(self, topic: str) -> int:
        return sum(end_offsets(self.connection, [topic]).values())

    def read(self, topic: str) -> list[Event]:
        return [decode_message(m).event for m in read_all(self.connection, [topic])]


def fold(events: Iterable[Event], expired: Iterable[str] = ()) -> dict[str, ListingState]:
    """Each listing's state from the test's own events, in version order; `expired` end by expiry."""
    states: dict[str, ListingState] = {}
    for event in sorted(events, key=lambda e: (e.envelope.listing_id, e.envelope.version)):
        states[event.envelope.listing_id] = evolve(states.get(event.envelope.listing_id), event)  # type: ignore[arg-type]
    for listing_id in expired:
        state = states[listing_id]
        env = Envelope(
            event_id=f"expiry-{listing_id}", listing_id=listing_id, version=state.envelope.version + 1,
            agency=BACKBONE, occurred_at=state.expires_at, recorded_at=state.expires_at,
        )  # fmt: skip
        states[listing_id] = evolve(state, ListingExpired(envelope=env, expired_at=state.expires_at))
    return states


def every_version(events: Iterable[Event]) -> dict[tuple[str, int], ListingState]:
    """The state after each event, by (listing, version): what `ledger` must hold, exactly."""
    states: dict[tuple[str, int], ListingState] = {}
    latest: dict[str, ListingState] = {}
    for event in sorted(events, key=lambda e: (e.envelope.listing_id, e.envelope.version)):
        listing_id = event.envelope.listing_id
        latest[listing_id] = evolve(latest.get(listing_id), event)  # type: ignore[arg-type]
        states[(listing_id, event.envelope.version)] = latest[listing_id]
    return states


def expected_views(states: dict[str, ListingState], agency: str, policy: Policy) -> dict[str, ViewRow]:
    rows = {lid: project(state, agency, policy) for lid, state in states.items()}
    return {lid: row for lid, row in rows.items() if row is not None}


def copy_rows(url: str, agency: str) -> dict[str, ViewRow]:
    store = open_store(url, agency)
    try:
        return {row.listing_id: row for row in store.rows()}
    finally:
        store.close()


def wait_for_copy(
    backbone: Backbone, agency: str, url: str, want: dict[str, ViewRow], timeout: float
) -> None:
    """Until the copy at `url` holds exactly `want`; on timeout, say how it differs."""

    def equal() -> bool:
        backbone.assert_alive()
        return copy_rows(url, agency) == want

    try:
        wait_for(f"the copy of {agency} to equal its expected view", equal, timeout, every=0.5)
    except AssertionError:
        have = copy_rows(url, agency)
        wrong = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
        raise AssertionError(
            f"{agency}: {len(wrong)} rows differ, e.g. {wrong[:5]}\n{backbone.logs()}"
        ) from None


def taken_positions(backbone: Backbone, topic: str) -> set[tuple[int, int]]:
    """Positions the copy must acknowledge: all but the ledger's re-emissions of a version it already
    delivered (a restarted ledger re-sends them), which a copy takes once and acknowledges once."""
    known: dict[str, int] = {}
    taken = set()
    for msg in read_all(backbone.connection, [topic]):
        change = decode_message(msg).event
        assert isinstance(change, ViewChanged)
        lid = change.envelope.listing_id
        if judge(change, known.get(lid, 0)) is not Applied.REPEATED:
            taken.add((msg.partition() or 0, msg.offset() or 0))
        known[lid] = max(known.get(lid, 0), change.envelope.version)
    return taken


def described(backbone: Backbone, topic: str, positions: list[tuple[int, int]]) -> list[str]:
    """What the view messages at `positions` were (listing, version, sender), for a failure message."""
    wanted, found = set(positions[:10]), {}
    for msg in read_all(backbone.connection, [topic]):
        where = (msg.partition() or 0, msg.offset() or 0)
        if where in wanted:
            change = decode_message(msg).event
            assert isinstance(change, ViewChanged)
            found[where] = f"{where}: {change.envelope.listing_id} v{change.envelope.version} {change.op}"
    return [found.get(where, f"{where}: not in {topic}") for where in sorted(wanted)]


def applied_once(backbone: Backbone, agency: str) -> None:
    """Every message of views.<agency> was applied, and none twice.

    Acknowledgements carry the input position and a deterministic id: a re-sent one is
    byte-identical, while applying a position twice would give it a second applied_at.
    """
    topic = backbone.topics.views(agency)
    positions = taken_positions(backbone, topic)
    acks: dict[str, set[datetime]] = {}
    acked = set()
    for event in backbone.read(backbone.topics.copies_applied(agency)):
        if isinstance(event, CopyApplied) and event.copy_agency == agency:
            acks.setdefault(event.envelope.event_id, set()).add(event.applied_at)
            acked.add((event.partition, event.offset))
    twice = {k: v for k, v in acks.items() if len(v) > 1}
    assert not twice, f"{agency} applied {len(twice)} positions more than once"
    extra = sorted(acked - positions)
    assert not extra, f"{agency}: acknowledged, yet re-emitted or unread: {described(backbone, topic, extra)}"
    assert acked == positions, f"{agency}: {len(positions - acked)} view changes never acknowledged"
