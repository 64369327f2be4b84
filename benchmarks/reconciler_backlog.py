"""The reconciler's other inputs for `bench_restart.py`: a backlog of acknowledgements, findings and
digests written straight to their topics, and what a snapshot of them holds, generated into it.

Built quickly, not through the services: one `CopyApplied` is encoded and its listing id (fixed
width, `G-0000000`) patched per record, so N acknowledgements cost N byte replaces and N sends;
findings are pairs (a `stale_copy` detection and the `repaired` that closed it) of the first
listings, encoded one by one; digests are one encoded `CopyDigest` sent D times. `snapshot_of`
then writes into a built snapshot what reading them would have left there (the latest ack of
every listing, every finding id, the last digest) with the positions of each partition's end.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Producer

from benchmarks.generated_state import acked, bulk
from services.core.connection import KafkaConnection
from services.core.digest import DEFAULT_BUCKETS
from services.core.events import CopyApplied, CopyDigest, Envelope
from services.core.kafka import end_offsets, producer_config
from services.core.serde import encode
from services.core.topics import Topics, copy_key
from services.reconciler import findings
from services.reconciler.acks import micros

AT = datetime(2026, 1, 1, tzinfo=UTC)
TEMPLATE_ID = "G-0000000"


def ack_template(agency: str) -> bytes:
    env = Envelope(event_id=f"ack-{TEMPLATE_ID}", listing_id=TEMPLATE_ID, version=1, agency=agency,
                   occurred_at=AT, recorded_at=AT)  # fmt: skip
    return encode(CopyApplied(envelope=env, copy_agency=agency, op="upsert", partition=0, offset=0,
                              row_hash="0" * 64, applied_at=AT))  # fmt: skip


def digest_value(agency: str) -> bytes:
    env = Envelope(event_id="digest", listing_id="", version=0, agency=agency, occurred_at=AT, recorded_at=AT)
    return encode(CopyDigest(envelope=env, copy_agency=agency, rows=0, root="0" * 64,
                             buckets=["0" * 64] * DEFAULT_BUCKETS, positions={}, taken_at=AT))  # fmt: skip


def finding_pairs(agency: str, pairs: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(pairs):
        lid = f"G-{i:07}"
        fid = findings.finding_id(findings.STALE_COPY, agency, lid, 1, None, AT.isoformat())
        found = findings.make(findings.STALE_COPY, fid, agency, lid, 1, "generated", AT, since=AT)
        closed = findings.repaired(found, AT + timedelta(seconds=2))
        out += [(copy_key(agency, lid), encode(found)), (copy_key(agency, lid), encode(closed))]
    return out


def write_backlog(
    connection: KafkaConnection, topics: Topics, agency: str, acks: int, pairs: int, digests: int
) -> None:
    """`acks` acknowledgements of G-0000000.., `pairs` closed findings and `digests` digests."""
    producer = Producer(producer_config(connection, **{"linger.ms": 50, "batch.size": 1_000_000}))
    template = ack_template(agency)

    def send(topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key.encode())
                return
            except BufferError:
                producer.poll(0.05)

    for i in range(acks):
        lid = f"G-{i:07}"
        send(
            topics.copies_applied(agency),
            copy_key(agency, lid),
            template.replace(TEMPLATE_ID.encode(), lid.encode()),
        )
    for key, value in finding_pairs(agency, pairs):
        send(topics.findings, key, value)
    value = digest_value(agency)
    for _ in range(digests):
        send(topics.copies_digests(agency), agency, value)
    producer.flush(300)


def snapshot_of(
    path: Path, connection: KafkaConnection, topics: Topics, agency: str, acks: int, pairs: int
) -> None:
    """Into the snapshot at `path`: what reading the backlog leaves, and each partition's end."""
    with bulk(path) as db:
        _kept(db, connection, topics, agency, acks, pairs)


def _kept(
    db: sqlite3.Connection, connection: KafkaConnection, topics: Topics, agency: str, acks: int, pairs: int
) -> None:
    acked(db, agency, acks, micros(AT))
    seen = [(findings.finding_id(findings.STALE_COPY, agency, f"G-{i:07}", 1, None, AT.isoformat()),)
            for i in range(pairs)]  # fmt: skip
    db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", seen)
    db.executemany("INSERT OR IGNORE INTO seen VALUES (?)",
                   [(findings.finding_id(findings.REPAIRED, fid),) for (fid,) in seen])  # fmt: skip
    db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?)", (agency, digest_value(agency)))
    inputs = [topics.copies_applied(agency), topics.findings, topics.copies_digests(agency)]
    ends = end_offsets(connection, inputs)
    db.executemany("INSERT OR REPLACE INTO positions VALUES (?, ?, ?)",
                   [(tp.topic, tp.partition, high) for tp, high in ends.items()])  # fmt: skip
