"""A real `accord copy run`, killed with SIGKILL (by pid) in the middle of its batches, twice.

Each batch is one transaction with its positions and acknowledgements, sent after the commit:
whenever the kill lands, the restarted copy must hold exactly its view, with positions at the
topic's end, every change acknowledged, and an acknowledgement sent twice (the kill came after
the commit and before the broker confirmed) byte for byte the same message: a change applied a
second time would carry a second, different acknowledgement. The group's committed offsets end
equal to the store's positions. On a SQLite file and on PostgreSQL, on the secured broker.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from functools import partial
from pathlib import Path

from services.core.connection import KafkaConnection
from services.core.copystore import open_store
from services.core.digest import Digest, leaf
from services.core.events import CopyApplied, ViewChanged
from services.core.kafka import decode_message, end_offsets, read_all
from services.core.views import ViewRow
from tests.integration.copies.support import group_offsets, send, wait_until
from tests.integration.ledger.harness import Backbone
from tests.unit.copies.changes import AGENCY, delete, row, upsert

LISTINGS = 10_000


def changes() -> tuple[list[ViewChanged], dict[str, ViewRow]]:
    """Every listing issued, a third corrected, a tenth revoked: what the copy must end up holding."""
    final = {f"L-{i:05}": row(f"L-{i:05}", subject_ref=f"s-{i % 97}") for i in range(LISTINGS)}
    sent = [upsert(r) for r in final.values()]
    for i in range(0, LISTINGS, 3):
        final[f"L-{i:05}"] = row(f"L-{i:05}", 2, subject_ref=f"s-{i % 97}", case_ref="corrected")
        sent.append(upsert(final[f"L-{i:05}"]))
    for i in range(1, LISTINGS, 10):
        sent.append(delete(f"L-{i:05}", 3))
        del final[f"L-{i:05}"]
    return sent, final


def test_a_copy_killed_mid_batch_loses_nothing_and_applies_nothing_twice(
    kafka_admin: KafkaConnection, namespace: str, url: str, tmp_path: Path
) -> None:
    backbone = Backbone(kafka_admin, namespace, tmp_path)
    topic = backbone.topics.views(AGENCY)
    sent, final = changes()
    send(kafka_admin, topic, sent)
    store = open_store(url, AGENCY)
    total = len(sent)

    def start() -> None:
        args = ["copy", "run", "--agency", AGENCY, "--store", url]
        backbone.start("copy", args, **backbone.as_(AGENCY), ACCORD_COPY_BATCH="200")

    def reached(done: int) -> int | None:
        backbone.assert_alive()
        taken = sum(store.positions().values())
        return taken if taken >= done else None

    try:
        for done in (total // 3, total // 2):  # killed past a third, restarted, killed again past a half
            start()
            taken = wait_until(f"the copy to take {done} changes", partial(reached, done))
            backbone.kill("copy", signal.SIGKILL)
            assert taken < total, "the copy finished before it could be killed: send more changes"
        start()
        wait_until("the copy to reach the topic's end", lambda: reached(total), timeout=120)
        ends = {tp.partition: high for tp, high in end_offsets(kafka_admin, [topic]).items()}
        assert store.positions() == ends
        group = backbone.connection_as(AGENCY).group(f"copy-{AGENCY}")
        wait_until("the group's offsets", lambda: group_offsets(kafka_admin, group, topic) == ends or None)
        wait_until("every acknowledgement confirmed", lambda: store.unsent_acks() == [] or None)
    finally:
        backbone.stop_all()

    try:
        assert {r.listing_id: r for r in store.rows()} == final
        expected = Digest.of(
            (r.listing_id, leaf(r.listing_id, r.version, r.status, r.row_hash())) for r in final.values()
        )
        assert store.digest().hex_buckets() == expected.hex_buckets() == store.rescan_digest().hex_buckets()
    finally:
        store.close()
    acks: dict[tuple[int, int], set[bytes]] = defaultdict(set)  # view position -> every message acking it
    for msg in read_all(kafka_admin, [backbone.topics.copies_applied(AGENCY)]):
        ack = decode_message(msg).event
        assert isinstance(ack, CopyApplied)
        acks[ack.partition, ack.offset].add(msg.value() or b"")
    assert set(acks) == {(p, o) for p, high in ends.items() for o in range(high)}  # every change acknowledged
    assert all(len(values) == 1 for values in acks.values()), "a change was acknowledged twice, differently"
