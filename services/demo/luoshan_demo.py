"""`accord demo luoshan`: the case of docs/architecture.md §1, replayed on a running backbone in a minute.

A county police bureau bans a subject from flights and trains; civil aviation and
railway apply it. Civil aviation's database is backed up. The bureau revokes the
listing as a mislisting; both copies apply the revocation. Then civil aviation's
listing tables are restored from the old backup: its copy enforces the ban again,
and no acknowledgement will ever say so. The reconciler finds it by anti-entropy,
repairs it, and the timeline shows how long the copy was wrong: seconds, not years.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.core.cloudevent import source
from services.core.connection import KafkaConnection
from services.core.copystore import open_store
from services.core.crypto import Keystore
from services.core.events import CopyApplied
from services.core.kafka import EventProducer, create_topics
from services.core.policy import load_policy
from services.core.settings import KeystoreSettings
from services.core.topics import Topics
from services.demo import luoshan
from services.demo.drill import Children, backup, restore
from services.demo.timeline import Timeline
from services.demo.watch import Watch
from services.reconciler.findings import DIGEST_DRIFT, REPAIRED, REVOKED_STILL_ACTIVE, STALE_COPY
from services.reconciler.report import replay

CA = "civil-aviation"
NOT_LISTED = "not listed: the passenger may fly"
DEMO_ENV = {
    "ACCORD_COPY_DIGEST_INTERVAL_S": "1",
    "ACCORD_COPY_POLL_S": "0.2",
    "ACCORD_RECONCILE_LISTING_SLA_S": "10",
    "ACCORD_RECONCILE_REVOCATION_SLA_S": "5",
    "ACCORD_RECONCILE_REPAIR_SLA_S": "10",
    "ACCORD_RECONCILE_CHECK_INTERVAL_S": "0.5",
    "ACCORD_RECONCILE_ANTIENTROPY_INTERVAL_S": "2",
    "ACCORD_RECONCILE_DEEP_INTERVAL_S": "10",
}


def run_luoshan(connection: KafkaConnection, workdir: Path, say: Callable[[str], None]) -> Timeline:
    """Tell the whole story against the broker `connection` reaches; the child services run in `workdir`."""
    topics, policy = Topics(f"luoshan-{uuid.uuid4().hex[:8]}."), load_policy()
    create_topics(connection, topics.specs(policy.issuers, policy.enforcers), partitions=3, replication=1)
    keystore = Keystore(workdir / "keys")
    demo_keys(workdir).create_local([a.id for a in policy.agencies])
    key = secrets.token_hex(32)
    children = Children(_environment(connection, topics, workdir, key), workdir / "logs")
    timeline = Timeline(topics.namespace)
    say(timeline.header())
    try:
        _start(children, workdir)
        watch = Watch(connection, [*topics.all_copies_applied(policy.enforcers), topics.findings], children)
        try:
            Story(timeline, watch, children, workdir, keystore, key.encode(), topics, say).tell(connection)
        finally:
            watch.close()
    finally:
        children.stop_all()
    timeline.consistency = replay(connection, topics, policy).text()
    return timeline


def demo_keys(workdir: Path) -> KeystoreSettings:
    """The demo plays every part on one host: agencies' keys, the backbone's, the trust anchor apart."""
    return KeystoreSettings(
        keystore=workdir / "keys",
        trust_anchor=workdir / "trust" / "public_keys.yaml",
        backbone_key_file=workdir / "backbone" / "backbone.key",
    )


def _environment(connection: KafkaConnection, topics: Topics, workdir: Path, key: str) -> dict[str, str]:
    given = {
        **connection.environment(),
        "ACCORD_NAMESPACE": topics.namespace,
        "ACCORD_TRUST_ANCHOR": str(demo_keys(workdir).trust_anchor),
        "ACCORD_BACKBONE_KEY_FILE": str(demo_keys(workdir).backbone_key_file),
        "ACCORD_PSEUDONYM_KEY": key,
    }
    return {**os.environ, **DEMO_ENV, **given}


def _store_url(workdir: Path, agency: str) -> str:
    return f"sqlite:///{workdir / 'copies' / f'{agency}.db'}"


def _start(children: Children, workdir: Path) -> None:
    children.start("ledger", "ledger", "run", "--data-dir", str(workdir / "ledger"))
    for agency in luoshan.ENFORCERS:
        children.start(
            f"copy-{agency}", "copy", "run", "--agency", agency, "--store", _store_url(workdir, agency)
        )
    copies = [arg for a in luoshan.ENFORCERS for arg in ("--copy", f"{a}={_store_url(workdir, a)}")]
    children.start("reconciler", "reconcile", "run", *copies)


@dataclass
class Story:
    """The demo's steps, each recorded on the timeline (with the event's own time) and narrated."""

    timeline: Timeline
    watch: Watch
    children: Children
    workdir: Path
    keystore: Keystore
    key: bytes
    topics: Topics
    say: Callable[[str], None]

    def step(self, at: datetime, text: str) -> None:
        start = self.timeline.steps[0][0] if self.timeline.steps else at
        self.timeline.add(at, text)
        self.say(f"  +{(at - start).total_seconds():6.2f} s  {text}")

    def tell(self, connection: KafkaConnection) -> None:
        producer = EventProducer(connection, source(self.topics.namespace, luoshan.BUREAU))
        listing = luoshan.marking(self.keystore, self.key, datetime.now(UTC))
        lid = self.timeline.listing_id = listing.envelope.listing_id
        producer.send_sync(self.topics.listings(luoshan.BUREAU), lid, listing)
        subject = f"{listing.subject_ref[:12]}..."
        self.step(
            listing.envelope.recorded_at, f"luoshan-police bans subject {subject} from flights and trains"
        )
        self.applied_everywhere(lid, 1, "the ban")
        backup(_store_url(self.workdir, CA), CA, self.backup_file())
        self.step(datetime.now(UTC), "civil-aviation's database is backed up")
        revocation = luoshan.admission(listing, self.keystore, datetime.now(UTC))
        producer.send_sync(self.topics.listings(luoshan.BUREAU), lid, revocation)
        self.timeline.revoked_at = revocation.envelope.recorded_at
        self.step(revocation.envelope.recorded_at, "luoshan-police revokes the listing: a mislisting")
        self.applied_everywhere(lid, 2, "the revocation")
        self.restore(listing.subject_ref)
        self.reconciled(lid, listing.subject_ref)
        # Restoring the rows can make a rolling verification see them before the restarted sink's
        # digest does (a `digest_drift`): the story ends once every such finding is closed.
        self.watch.resolved(DIGEST_DRIFT)

    def applied_everywhere(self, listing_id: str, version: int, what: str) -> None:
        acks = sorted(
            (self.watch.applied(a, listing_id, version) for a in luoshan.ENFORCERS), key=_applied_at
        )
        for ack in acks:
            self.step(ack.applied_at, f"{ack.copy_agency}'s copy applies {what} (v{version})")

    def backup_file(self) -> Path:
        return self.workdir / f"{CA}-backup.jsonl"

    def restore(self, subject_ref: str) -> None:
        self.children.stop(f"copy-{CA}")
        restore(_store_url(self.workdir, CA), CA, self.backup_file())
        self.timeline.restored_at = datetime.now(UTC)
        self.step(
            self.timeline.restored_at, "civil-aviation's listing tables are restored from the old backup"
        )
        self.step(datetime.now(UTC), f"an airport check now answers: {self.check(subject_ref)}")
        self.children.start(
            f"copy-{CA}", "copy", "run", "--agency", CA, "--store", _store_url(self.workdir, CA)
        )

    def reconciled(self, listing_id: str, subject_ref: str) -> None:
        detection = self.watch.finding(CA, listing_id, (REVOKED_STILL_ACTIVE, STALE_COPY))
        self.timeline.detection = detection
        found = f"{detection.kind} ({detection.detail})"
        self.step(detection.detected_at, f"the reconciler finds civil-aviation's copy stale: {found}")
        self.step(detection.detected_at, "the reconciler re-delivers the revocation to civil-aviation")
        repaired = self.watch.finding(CA, listing_id, (REPAIRED,))
        self.timeline.repaired_at = repaired.detected_at
        self.step(repaired.detected_at, "civil-aviation's copy applies the repair")
        answer = self.check(subject_ref)
        self.timeline.listed_at_the_end = answer != NOT_LISTED
        self.step(datetime.now(UTC), f"an airport check now answers: {answer}")

    def check(self, subject_ref: str) -> str:
        """What civil aviation's copy says about the subject, read straight from its database."""
        store = open_store(_store_url(self.workdir, CA), CA)
        try:
            rows, _ = store.rows_for_subject(subject_ref)
        finally:
            store.close()
        measures = sorted({m for row in rows for m in row.measures})
        return f"{', '.join(measures)}: the passenger is stopped" if measures else NOT_LISTED


def _applied_at(ack: CopyApplied) -> datetime:
    return ack.applied_at
