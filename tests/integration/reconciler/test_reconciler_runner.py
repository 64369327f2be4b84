"""The reconciler's wiring on a real broker: what it reads, what it publishes, what it survives.

The test plays the ledger and the copy sinks by producing their messages itself (the
real ones are exercised by tests/scenarios/test_luoshan.py), so each situation is
exact: a change never acknowledged, a revocation acknowledged but not written, a
repair the copy applies and one it never applies, and an unreadable message in the
middle of the acknowledgements.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

from services.core.connection import KafkaConnection
from services.core.copystore import Applied, CopyStore, open_store
from services.core.copystore.probe import StoreProbe
from services.core.events import Event, Finding, ListingState, Rejected, ViewChanged
from services.core.kafka import EventProducer, admin_client, consumer, create_topics, decode_message, read_all
from services.core.listing import evolve
from services.core.policy import Policy
from services.core.settings import KafkaSettings
from services.core.topics import Topics, copy_key
from services.core.views import view_change
from services.reconciler import findings
from services.reconciler.cli import reconcile
from services.reconciler.runner import on_kafka
from services.reconciler.settings import ReconcilerSettings
from tests.support.factory import T0, Ledgerbook, policy_with_keys
from tests.unit.reconciler.support import applied

CA, RAIL = "civil-aviation", "railway"
FAST = ReconcilerSettings(
    listing_sla_s=1, revocation_sla_s=1, repair_sla_s=3, check_interval_s=0.2,
    antientropy_interval_s=0.5, deep_interval_s=0.5,
)  # fmt: skip


@dataclass
class Backbone:
    """The test's stand-in for the ledger and the sinks, writing to real topics."""

    connection: KafkaConnection
    topics: Topics
    policy: Policy
    book: Ledgerbook
    store: CopyStore
    producer: EventProducer
    states: dict[str, ListingState] = field(default_factory=dict)

    def record(self, event: Event) -> dict[str, tuple[ViewChanged, int, int]]:
        """Publish the listing's new state and its view changes; return where each change landed."""
        lid = event.envelope.listing_id
        before, after = self.states.get(lid), evolve(self.states.get(lid), event)  # type: ignore[arg-type]
        self.states[lid] = after
        self.producer.send_sync(self.topics.ledger, lid, after)
        landed = {}
        for agency in (CA, RAIL):
            change = view_change(before, after, agency, self.policy, datetime.now(UTC))
            if change is not None:
                where = self.producer.send_sync(self.topics.views(agency), lid, change)
                landed[agency] = (change, where.partition, where.offset)
        return landed

    def ack(self, change: ViewChanged, partition: int, offset: int, write: bool = True) -> None:
        """What a sink does: apply (unless it is the buggy kind) and acknowledge."""
        if write and change.view_agency == CA:
            assert self.store.apply(change, partition, offset) is Applied.APPLIED
        ack = applied(change, offset, datetime.now(UTC), partition)
        self.producer.send_sync(
            self.topics.copies_applied(change.view_agency),
            copy_key(change.view_agency, ack.envelope.listing_id),
            ack,
        )


@pytest.fixture
def backbone(kafka_admin: KafkaConnection, namespace: str, tmp_path: Path) -> Iterator[Backbone]:
    policy, keystore = policy_with_keys(tmp_path / "keys")
    topics = Topics(namespace)
    specs = topics.specs(policy.issuers, policy.enforcers)
    create_topics(kafka_admin, specs, 3, 1)
    store = open_store(f"sqlite:///{tmp_path / 'ca.db'}", CA)
    try:
        yield Backbone(kafka_admin, topics, policy, Ledgerbook(keystore), store, EventProducer(kafka_admin))
    finally:
        store.close()
        admin = admin_client(kafka_admin)
        for future in admin.delete_topics([s.name for s in specs], operation_timeout=30).values():
            future.result()


def repairs_applied_for(backbone: Backbone, listing_id: str, stop: threading.Event) -> None:
    """A sink that applies the reconciler's repairs of one listing and ignores the others."""
    topic = backbone.topics.views(CA)
    reader = consumer(backbone.connection, f"{topic}-sink")
    reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    try:
        while not stop.is_set():
            for msg in reader.consume(num_messages=50, timeout=0.2):
                change = decode_message(msg).event
                assert isinstance(change, ViewChanged)
                if change.envelope.agency == "reconciler" and change.envelope.listing_id == listing_id:
                    backbone.ack(change, msg.partition() or 0, msg.offset() or 0)
    finally:
        reader.close()


def findings_until(
    backbone: Backbone, count: int, runner: threading.Thread, timeout: float = 60.0
) -> list[Finding]:
    deadline = time.monotonic() + timeout
    found: list[Finding] = []
    while time.monotonic() < deadline and len(found) < count and runner.is_alive():
        time.sleep(0.5)
        found = [e for m in read_all(backbone.connection, [backbone.topics.findings])
                 if isinstance(e := decode_message(m).event, Finding)]  # fmt: skip
    return found


def test_missing_acks_stale_copies_repairs_and_escalations_are_published(backbone: Backbone) -> None:
    book = backbone.book
    fine = backbone.record(book.issue("L-1"))
    raw = Producer(backbone.connection.client_config())
    raw.produce(backbone.topics.copies_applied(RAIL), value=b"not an event", key=b"garbage")
    raw.flush(10)
    for change, partition, offset in fine.values():
        backbone.ack(change, partition, offset)  # read after the unreadable message: must still count
    unacked = backbone.record(book.issue("L-2"))
    backbone.ack(*unacked[CA])  # railway never acknowledges L-2
    revoked = backbone.record(book.issue("L-3"))
    for landed in revoked.values():
        backbone.ack(*landed)
    for change, partition, offset in backbone.record(book.revoke("L-3")).values():
        backbone.ack(change, partition, offset, write=False)  # acknowledged, never written
    lost = backbone.record(book.issue("L-5"))
    backbone.ack(*lost[CA], write=False)
    backbone.ack(*lost[RAIL])

    stop = threading.Event()
    log: list[str] = []
    ns = backbone.topics.namespace
    kafka = KafkaSettings.of(backbone.connection, namespace=ns)
    runner = on_kafka(kafka, FAST, backbone.policy, {CA: StoreProbe(backbone.store)}, log.append)
    threads = [threading.Thread(target=runner.run, args=(stop,)),
               threading.Thread(target=repairs_applied_for, args=(backbone, "L-3", stop))]  # fmt: skip
    for thread in threads:
        thread.start()
    try:
        findings = findings_until(backbone, 5, threads[0])
        time.sleep(2)  # anything raised wrongly would come with the next checks
        findings = findings_until(backbone, 5, threads[0])
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert sorted((f.kind, f.copy_agency, f.envelope.listing_id) for f in findings) == [
        ("escalated", CA, "L-5"),
        ("missing_ack", RAIL, "L-2"),
        ("repaired", CA, "L-3"),
        ("revoked_still_active", CA, "L-3"),
        ("stale_copy", CA, "L-5"),
    ]
    assert backbone.store.row("L-3") is None and backbone.store.row("L-1") is not None
    [rejected] = [decode_message(m).event for m in read_all(backbone.connection, [backbone.topics.rejected])]
    assert isinstance(rejected, Rejected) and rejected.source_topic == backbone.topics.copies_applied(RAIL)
    assert any("p50 s" in line for line in log)  # the time-to-consistency table is printed on exit


def test_the_report_replays_times_and_findings_from_the_log(backbone: Backbone) -> None:
    """`accord reconcile report` needs nothing but the topics."""
    for change, partition, offset in backbone.record(backbone.book.issue("L-1")).values():
        backbone.ack(change, partition, offset)
    backbone.record(backbone.book.issue("L-2"))  # nobody acknowledges it
    finding = findings.make("repaired", "f-1", CA, "L-9", 3, "repaired", T0 + timedelta(seconds=30), since=T0)
    backbone.producer.send_sync(backbone.topics.findings, copy_key(CA, "L-9"), finding)
    env = {**backbone.connection.environment(), "ACCORD_NAMESPACE": backbone.topics.namespace}
    result = CliRunner().invoke(reconcile, ["report"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[:3] for line in lines if line.startswith(CA) and " change " in line] == [
        [CA, "change", "1"]
    ]
    assert [line.split() for line in lines if line.startswith(CA) and " missed " in line] == [
        [CA, "missed", "1", "30.000", "30.000", "30.000"]
    ]
    assert [CA, "repaired", "1"] in [line.split() for line in lines]
    assert "changes not acknowledged yet: 2" in result.output  # L-2, for civil aviation and railway

    as_json = CliRunner().invoke(reconcile, ["report", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    ours = [t for t in report["time_to_consistency"] if t["agency"] == CA]
    assert [(t["kind"], t["count"]) for t in ours] == [("change", 1), ("missed", 1)]
    assert [t["p50_s"] for t in ours if t["kind"] == "missed"] == [30.0]
    assert {"agency": CA, "kind": "repaired", "count": 1} in report["findings"]
    assert (report["unacknowledged"], report["unreadable"]) == (2, 0)


def test_an_acknowledgement_on_another_copys_topic_counts_for_nobody(backbone: Backbone) -> None:
    """ACLs let civil aviation write only its own acknowledgement topic; an ack there that names
    railway (railway's copy never applied the change) must not hide railway's stale copy."""
    landed = backbone.record(backbone.book.issue("L-1"))
    change, partition, offset = landed[RAIL]
    forged = applied(change, offset, datetime.now(UTC), partition)
    backbone.producer.send_sync(backbone.topics.copies_applied(CA), copy_key(RAIL, "L-1"), forged)
    backbone.ack(*landed[CA])

    stop, log = threading.Event(), list[str]()
    kafka = KafkaSettings.of(backbone.connection, namespace=backbone.topics.namespace)
    runner = threading.Thread(target=on_kafka(kafka, FAST, backbone.policy, {}, log.append).run, args=(stop,))
    runner.start()
    try:
        findings = findings_until(backbone, 1, runner)
    finally:
        stop.set()
        runner.join(30)
    assert [(f.kind, f.copy_agency) for f in findings] == [("missing_ack", RAIL)]
    [rejected] = [decode_message(m).event for m in read_all(backbone.connection, [backbone.topics.rejected])]
    assert isinstance(rejected, Rejected) and rejected.source_topic == backbone.topics.copies_applied(CA)
    assert "not its topic" in rejected.reason
