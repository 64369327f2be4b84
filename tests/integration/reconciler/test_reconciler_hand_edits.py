"""Every wrong row found, every answer given, every figure true: a real copy sink on SQLite and
PostgreSQL, a real reconciler, a real broker, and a database administrator editing the copy by hand.

Rows inserted by hand (with a copied bucket, a wrong bucket, no bucket), a row deleted, a row's
measures, status and fields edited: each is found, explained as what it is, repaired, and timed
from the moment it was injected, not from the listing's age. A row corrupted under a front-line
check is answered as damaged, reported and repaired.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.copies.check import answer
from services.core.connection import KafkaConnection
from services.core.digest import bucket_of
from services.core.events import Finding
from services.reconciler.report import replay
from tests.integration.reconciler.live import CA, Live, live, wait_for
from tests.unit.copies.test_copystore_behaviour import execute

LISTINGS = 20
COLS = "version, status, subject_ref, measures, fields, effective_from, expires_at, exemptions"
DETECTIONS = ("stale_copy", "revoked_still_active", "expired_still_active")


@pytest.fixture
def world(kafka_admin: KafkaConnection, namespace: str, url: str, tmp_path: Path) -> Iterator[Live]:
    yield from live(kafka_admin, namespace, url, tmp_path)


def settled(world: Live) -> None:
    """Publish the listings and wait until the copy holds them, acknowledged, with nothing to report."""
    for i in range(LISTINGS):
        world.record(world.book.issue(f"L-{i:02}", measures=("flight_ban",)))
    wait_for("the copy to hold every listing", lambda: world.rows() == world.expected())


def intruder(prefix: str, not_in: int) -> str:
    return next(f"{prefix}-{i}" for i in range(1000) if bucket_of(f"{prefix}-{i}") != not_in)


def inject(world: Live) -> dict[str, str]:
    """Edit the copy by hand; listing -> what the reconciler must call it."""
    template = bucket_of("L-00")
    inserted = {
        intruder("X-copied", template): ("bucket", "leaf"),
        intruder("X-wrong", template): ("(bucket + 7) % 256", "'not a leaf'"),
        intruder("X-none", template): ("NULL", "NULL"),
    }
    for lid, (bucket, leaf) in inserted.items():
        execute(world.url, f"INSERT INTO copy_rows (listing_id, {COLS}, bucket, leaf) SELECT '{lid}', "
                           f"{COLS}, {bucket}, {leaf} FROM copy_rows WHERE listing_id = 'L-00'")  # fmt: skip
    execute(world.url, "DELETE FROM copy_rows WHERE listing_id = 'L-01'")
    execute(world.url, "UPDATE copy_rows SET measures = '[]' WHERE listing_id = 'L-02'")
    execute(world.url, "UPDATE copy_rows SET status = 'disputed' WHERE listing_id = 'L-03'")
    execute(world.url, "UPDATE copy_rows SET fields = '{\"case_ref\":\"forged\"}' WHERE listing_id = 'L-04'")
    return {**dict.fromkeys(inserted, "extra"), "L-01": "missing", "L-02": "altered", "L-03": "wrong_status",
            "L-04": "altered"}  # fmt: skip


def test_hand_edits_are_found_explained_repaired_and_timed_from_when_they_were_made(world: Live) -> None:
    world.start_sink(digest_interval_s=0.5, verify_rows_per_minute=300_000)  # every bucket in ~3 s
    settled(world)
    world.start_reconciler()
    wait_for("the reconciler's first passes", lambda: world.logs["r1"] and world.rows() == world.expected())
    injected = datetime.now(UTC)
    wanted = inject(world)

    try:
        wait_for("every edit repaired", lambda: world.rows() == world.expected(), timeout=90)
        found = wait_for("every repair acknowledged", lambda: _repaired(world, set(wanted)), timeout=60)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_dump(world)}") from None
    detections = {f.envelope.listing_id: f for f in world.findings() if f.kind in DETECTIONS}
    assert {lid: detections[lid].detail.split(":")[0] for lid in wanted} == wanted
    for lid in wanted:
        detection, repaired = detections[lid], found[lid]
        assert detection.since is not None and injected - timedelta(seconds=1) <= detection.since
        assert detection.since <= detection.detected_at and "first digest that showed it" in detection.detail
        took = (repaired.detected_at - detection.since).total_seconds()
        assert 0 <= took <= (repaired.detected_at - injected).total_seconds() + 1  # never the listing's age
    assert not [f for f in world.findings() if f.kind == "unexplained_bucket"]
    store = world.store
    agrees = lambda: store.digest().hex_buckets() == store.rescan_digest().hex_buckets()  # noqa: E731
    wait_for("the running digest to agree with the rows", agrees)

    report = replay(world.connection, world.topics, world.policy)
    changed = report.times.summary()[(CA, "changed")]
    assert changed.count == len(wanted)
    assert changed.max <= (max(f.detected_at for f in found.values()) - injected).total_seconds() + 1
    assert "changed under its sink" in report.text()


def _dump(world: Live) -> str:
    """What the copy holds against what it should, and what the reconciler said: why it is not repaired."""
    rows, expected = world.rows(), world.expected()
    wrong = {lid: (rows.get(lid), expected.get(lid)) for lid in rows.keys() | expected.keys()
             if rows.get(lid) != expected.get(lid)}  # fmt: skip
    lines = [f"{lid}: copy {have} / expected {want}" for lid, (have, want) in sorted(wrong.items())]
    kinds = [f"{f.kind} {f.envelope.listing_id} {f.detail}" for f in world.findings()]
    logs = [f"[{name}] {line}" for name, each in world.logs.items() for line in each]
    return "\n".join(["rows that differ:", *lines, "findings:", *kinds, "reconciler log:", *logs])


def _repaired(world: Live, wanted: set[str]) -> dict[str, Finding] | None:
    found = {f.envelope.listing_id: f for f in world.findings() if f.kind == "repaired"}
    return found if wanted <= set(found) else None


def test_a_row_corrupted_under_a_check_is_answered_damaged_reported_and_repaired(world: Live) -> None:
    world.start_sink(digest_interval_s=0.5, verify_rows_per_minute=1)  # found by the check, not the digest
    settled(world)
    world.start_reconciler()
    subject = world.expected()["L-05"].subject_ref
    execute(world.url, "UPDATE copy_rows SET status = 'revoked' WHERE listing_id = 'L-05'")
    checked_at = datetime.now(UTC)
    result = answer(world.store, subject, {0: 0}, checked_at, sla_s=300)
    assert result.advice.startswith("COPY DAMAGED, CONFIRM WITH THE ISSUING AGENCY")
    assert not result.trustworthy

    def kinds() -> set[str]:
        return {f.kind for f in world.findings() if f.envelope.listing_id == "L-05"}

    wait_for("a copy_damaged finding and the repair", lambda: {"copy_damaged", "repaired"} <= kinds())
    [damaged] = [f for f in world.findings() if f.kind == "copy_damaged"]
    assert damaged.since is not None and abs((damaged.since - checked_at).total_seconds()) < 1
    assert "not a valid view row" in damaged.detail
    assert answer(world.store, subject, {0: 0}, datetime.now(UTC), sla_s=300).trustworthy
