"""Two ledger workers in one group, a rebalance mid-stream, and a SIGKILL: nothing lost or decided twice.

Real `accord ledger run` subprocesses (RocksDB tables, each its own data directory and static
member id) drain a pre-filled stream. A second worker joins while the first is draining, more
events arrive, and as soon as the second has decided some of them the first is killed with SIGKILL
by pid (its partitions move once its session times out) and a last part arrives. The
test then counts, by listing and version (each event's own decision), every record in `ledger`
and `views.*`: each event has exactly one decision there, the one `evolve` gives, and a record
written again (a worker re-reading what it had not committed) only ever repeats it byte for byte.
Every version of every listing is decided, the intermediate ones too: a worker killed after its
tables recorded a listing's v2 but before v1's `ledger` record was confirmed would lose v1's
decision, were its tables ever ahead of the decisions (`ledger/tables.py`; the deterministic
case: `test_ledger_state_behind.py`).
"""

from __future__ import annotations

import json
import signal
from collections import defaultdict

from services.core.events import Event, Rejected, ViewChanged
from services.core.kafka import read_all
from services.core.serde import decode
from services.core.views import ViewRow
from tests.integration.ledger.harness import Backbone, every_version, expected_views, fold, wait_for

PARTS = (1500, 1500, 600)  # pre-filled; after the second worker joined; after the kill
TIMEOUT = 300.0


def events(backbone: Backbone, start: int, count: int) -> list[Event]:
    """`count` events of new listings, every third listing corrected once."""
    book, out = backbone.book(), list[Event]()
    for i in range(start, start + count):
        out.append(book.issue(f"R-{i:05d}", subject_ref=f"s-r-{i}"))
        if i % 3 == 0:
            out.append(book.correct(f"R-{i:05d}", legal_basis=f"corrected {i}"))
    return out


def handled(backbone: Backbone, worker: str) -> int:
    """Messages the worker reports handled (its health.json), 0 before its first report."""
    try:
        return int(json.loads((backbone.folder / worker / "health.json").read_text())["handled"])
    except (OSError, ValueError, KeyError):
        return 0


def ready(backbone: Backbone, worker: str) -> bool:
    """Whether the worker has recovered the table partitions it was assigned (its log says so)."""
    log = backbone.folder / f"{worker}.log"
    return log.exists() and "ledger ready" in log.read_text(errors="replace")


def decisions(backbone: Backbone, topic: str) -> dict[tuple[str, int], list[bytes]]:
    """Every record value of `topic`, by (listing, version), in the order written."""
    found: dict[tuple[str, int], list[bytes]] = defaultdict(list)
    for msg in read_all(backbone.connection, [topic]):
        key, value = msg.key(), msg.value()
        assert isinstance(key, bytes) and isinstance(value, bytes)
        found[(key.decode(), decode(value).envelope.version)].append(value)
    return found


def test_a_worker_joining_and_one_killed_mid_stream_lose_and_duplicate_nothing(backbone: Backbone) -> None:
    first = events(backbone, 0, PARTS[0])
    backbone.publish(first)
    backbone.start_ledger(store="rocksdb://", name="ledger-a")
    wait_for("worker a deciding", lambda: backbone.count(backbone.topics.ledger) > 0, TIMEOUT)
    backbone.start_ledger(store="rocksdb://", name="ledger-b")
    wait_for("worker b to join and recover its partitions", lambda: ready(backbone, "ledger-b"), TIMEOUT)
    backbone.publish(events(backbone, PARTS[0], PARTS[1]))  # across every partition: b gets its share
    wait_for("worker b deciding", lambda: handled(backbone, "ledger-b") > 0, TIMEOUT)
    backbone.assert_alive()
    backbone.kill("ledger-a", signal.SIGKILL)
    backbone.publish(events(backbone, PARTS[0] + PARTS[1], PARTS[2]))
    want = every_version(backbone.events)

    def complete() -> dict[tuple[str, int], list[bytes]] | None:
        backbone.assert_alive()
        have = decisions(backbone, backbone.topics.ledger)
        return have if have.keys() >= want.keys() else None

    have = wait_for("every event decided in ledger", complete, TIMEOUT, every=2.0)
    assert have.keys() == want.keys(), "a decision in ledger that no event asked for"
    twice = {k: v for k, v in have.items() if len(set(v)) > 1}
    assert not twice, f"{len(twice)} events decided twice, differently, e.g. {list(twice)[:3]}"
    for key, values in have.items():
        assert decode(values[0]) == want[key], f"{key}: not the state its event gives"
    again = sum(len(v) - 1 for v in have.values())
    print(f"{len(want)} events, each decided once; {again} ledger records re-sent byte for byte")
    assert handled(backbone, "ledger-b") > 0

    final = fold(backbone.events)
    for agency in sorted(backbone.policy.enforcers):
        topic = backbone.topics.views(agency)
        changes = decisions(backbone, topic)
        assert all(len(set(v)) == 1 for v in changes.values()), (
            f"{agency}: a view change sent twice, differently"
        )
        latest = {c.envelope.listing_id: c for c in backbone.read(topic) if isinstance(c, ViewChanged)}
        upserts = {k: ViewRow.from_change(c) for k, c in latest.items() if c.op == "upsert"}
        rows: dict[str, ViewRow] = expected_views(final, agency, backbone.policy)
        assert upserts == rows, f"{agency}: its view differs from the fold"
    refused = [r for r in backbone.read(backbone.topics.rejected) if isinstance(r, Rejected)]
    assert refused == [], f"refused around the rebalance: {[r.reason_code for r in refused][:5]}"
