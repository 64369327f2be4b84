"""The README's showcase as a test: `accord demo luoshan` on a real broker, with the real ledger,
two real copy sinks and the reconciler as child processes.

A revoked travel ban comes back in civil aviation's copy when its tables are restored
from an old backup; no acknowledgement can notice. The reconciler must find it, say so
with the right kind of finding, repair it, and raise nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.connection import KafkaConnection
from services.core.copystore import open_store
from services.core.events import Finding
from services.core.kafka import admin_client, decode_message, read_all
from services.core.topics import Topics
from services.demo.luoshan_demo import run_luoshan
from services.demo.timeline import Timeline


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("luoshan")


@pytest.fixture(scope="module")
def luoshan(kafka_admin: KafkaConnection, workdir: Path) -> Iterator[tuple[Timeline, list[str]]]:
    """One run of the demo for both tests (it takes several seconds)."""
    narrated: list[str] = []
    timeline = run_luoshan(kafka_admin, workdir, narrated.append)
    try:
        yield timeline, narrated
    finally:
        admin = admin_client(kafka_admin)
        ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(timeline.namespace)]
        for future in admin.delete_topics(ours, operation_timeout=30).values():
            future.result()


def test_the_stale_copy_is_detected_repaired_and_timed(luoshan: tuple[Timeline, list[str]]) -> None:
    timeline, narrated = luoshan
    assert timeline.detection is not None and timeline.revoked_at and timeline.restored_at
    assert timeline.detection.kind == "revoked_still_active"
    assert timeline.detection.copy_agency == "civil-aviation"
    since = timeline.detection.since  # the copy acknowledged the revocation, then a restore undid it:
    assert since is not None and timeline.restored_at <= since <= timeline.detection.detected_at  # first seen
    assert timeline.restored_at <= timeline.detection.detected_at
    assert timeline.repaired_at is not None and timeline.detection.detected_at <= timeline.repaired_at
    assert 0 < timeline.wrong_for() < 60
    restored = [line for line in narrated if "restored from the old backup" in line]
    stopped = [line for line in narrated if "the passenger is stopped" in line]
    assert restored and stopped, "the fault must really put the ban back before the reconciler acts"
    assert not timeline.listed_at_the_end and narrated[-1].endswith("the passenger may fly")
    text = timeline.render()
    wanted = ("revoked at", "detected at", "repaired at", "was wrong for", "civil-aviation       changed")
    for words in wanted:
        assert words in text


def test_civil_aviation_ends_without_the_listing_and_nothing_else_was_raised(
    luoshan: tuple[Timeline, list[str]], kafka_admin: KafkaConnection, workdir: Path
) -> None:
    timeline, _ = luoshan
    store = open_store(f"sqlite:///{workdir / 'copies' / 'civil-aviation.db'}", "civil-aviation")
    try:
        assert store.row(timeline.listing_id) is None
    finally:
        store.close()
    events = [decode_message(m).event for m in read_all(kafka_admin, [Topics(timeline.namespace).findings])]
    findings = [e for e in events if isinstance(e, Finding)]
    assert len(findings) == len(events)
    # The restore changes rows, not positions: a rolling verification that reads the restored rows
    # before the restarted sink has published their digest rightly sees a digest that disagrees
    # with them (`digest_drift`), closed once the new digest arrives. Timing decides whether it
    # happens; nothing else may be raised, and only about civil aviation.
    drifts = [f for f in findings if f.kind == "digest_drift"]
    closes = [f.detail.rsplit(" ", 1)[-1] for f in findings if f.kind == "resolved"]  # "... finding <id>"
    assert sorted(closes) == sorted(f.finding_id for f in drifts)
    assert all(f.copy_agency == "civil-aviation" for f in drifts)
    rest = [f for f in findings if f.kind not in ("digest_drift", "resolved")]
    kinds = sorted((f.kind, f.copy_agency, f.envelope.listing_id) for f in rest)
    assert kinds == [
        ("repaired", "civil-aviation", timeline.listing_id),
        ("revoked_still_active", "civil-aviation", timeline.listing_id),
    ]
