"""A backbone's topics on the real broker, filled by the test itself, and the audit CLI run against them.

Listing events are sealed by `Ledgerbook` (as the publisher seals them); copy
acknowledgements and findings are the events copies and the reconciler would
write. The audit command group runs in-process through click's CliRunner, with
the environment an operator would set.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from click.testing import CliRunner, Result
from confluent_kafka import KafkaException, Producer

from services.audit.cli import audit
from services.core.connection import KafkaConnection
from services.core.events import CopyApplied, Envelope, Event, Finding, ListingState, Rejected
from services.core.kafka import Delivered, EventProducer, admin_client, create_topics, end_offsets
from services.core.listing import evolve, is_listing_event
from services.core.policy import Policy
from services.core.topics import Topics, copy_key
from services.core.views import view_change
from tests.support.factory import Ledgerbook, trust_env

PSEUDONYM_KEY = "audit-test-pseudonym-key"
Op = Literal["upsert", "delete"]


@dataclass
class World:
    connection: KafkaConnection
    topics: Topics
    policy: Policy
    book: Ledgerbook
    keystore_dir: Path
    producer: EventProducer
    states: dict[str, ListingState] = field(default_factory=dict)

    def publish(self, event: Event) -> Delivered:
        """Write a listing event to its agency's topic, as the publisher does."""
        env = event.envelope
        return self.producer.send_sync(self.topics.listings(env.agency), env.listing_id, event)

    def publish_bytes(self, agency: str, key: str, value: bytes) -> Delivered:
        """Write raw bytes to a listing topic: what a tamperer with broker access could do."""
        raw = Producer(self.connection.client_config())
        where: list[Any] = []
        raw.produce(
            self.topics.listings(agency),
            value=value,
            key=key.encode(),
            on_delivery=lambda err, msg: where.append(msg),
        )
        raw.flush(30)
        msg = where[0]
        return Delivered(msg.topic(), msg.partition(), msg.offset())

    def publish_and_emit(self, event: Event) -> None:
        """Publish a listing event and emit its view changes as the ledger would (core's own rules)."""
        self.publish(event)
        self.emit(event)

    def emit(self, event: Event) -> None:
        """Only the ledger's half: the view changes of `event`, without the event itself."""
        assert is_listing_event(event)
        before = self.states.get(event.envelope.listing_id)
        after = self.states[event.envelope.listing_id] = evolve(before, event)
        for agency in self.policy.enforcers:
            change = view_change(before, after, agency, self.policy, event.envelope.recorded_at)
            if change is not None:
                self.producer.send_sync(self.topics.views(agency), event.envelope.listing_id, change)

    def ack(self, agency: str, listing: str, version: int, at: datetime, op: Op = "upsert") -> None:
        """A copy's acknowledgement that it applied `version` of `listing` at `at`."""
        env = _envelope(listing, version, agency, at)
        ack = CopyApplied(
            envelope=env,
            copy_agency=agency,
            op=op,
            partition=0,
            offset=version,
            row_hash="0" * 64,
            applied_at=at,
        )
        self.producer.send_sync(self.topics.copies_applied(agency), copy_key(agency, listing), ack)

    def finding(
        self,
        agency: str,
        listing: str,
        kind: str,
        expected: int,
        copy: int | None,
        at: datetime,
        detail: str,
        since: datetime | None = None,
    ) -> None:
        env = _envelope(listing, expected, "reconciler", at)
        finding = Finding(
            envelope=env,
            finding_id=str(uuid.uuid4()),
            kind=kind,
            copy_agency=agency,
            expected_version=expected,
            copy_version=copy,
            detail=detail,
            since=since,
            detected_at=at,
        )
        self.producer.send_sync(self.topics.findings, copy_key(agency, listing), finding)

    def reject(self, where: Delivered, listing: str, code: str, reason: str, at: datetime) -> None:
        """The ledger's refusal of the event at `where`, as it writes it to `rejected`."""
        refusal = Rejected(
            envelope=_envelope(listing, 0, "ledger", at),
            source_topic=where.topic,
            partition=where.partition,
            offset=where.offset,
            reason_code=code,
            reason=reason,
            payload=b"",
        )
        self.producer.send_sync(self.topics.rejected, listing, refusal)

    def env(self) -> dict[str, str]:
        return {
            **self.connection.environment(),
            "ACCORD_NAMESPACE": self.topics.namespace,
            **trust_env(self.book.keystore, self.policy),
            "ACCORD_PSEUDONYM_KEY": PSEUDONYM_KEY,
        }

    def run(self, *args: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(audit, list(args), env=self.env(), input=stdin, catch_exceptions=False)

    def run_json(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        result = self.run(*args, "--json", stdin=stdin)
        assert result.exit_code == 0, result.output
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed


def _envelope(listing: str, version: int, agency: str, at: datetime) -> Envelope:
    return Envelope(
        event_id=str(uuid.uuid4()),
        listing_id=listing,
        version=version,
        agency=agency,
        occurred_at=at,
        recorded_at=at,
    )


def make_topics(connection: KafkaConnection, topics: Topics, policy: Policy) -> list[str]:
    """Create every topic, and wait until each partition has a leader that answers for it."""
    specs = topics.specs(policy.issuers, policy.enforcers)
    create_topics(connection, specs, partitions=3, replication=1)
    names = [s.name for s in specs]
    deadline = time.monotonic() + 30
    while True:
        try:
            end_offsets(connection, names)
            return names
        except (KafkaException, KeyError):  # not yet in the metadata, or no leader yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def drop_topics(connection: KafkaConnection, names: list[str]) -> None:
    admin = admin_client(connection)
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result()
