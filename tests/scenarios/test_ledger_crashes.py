"""The ledger killed with SIGKILL again and again under steady load loses nothing and invents nothing.

Listing events stream in at a steady pace while the worker (RocksDB tables, as in production)
is killed and restarted at once, several times. Afterwards the `ledger` topic and every view are
compared exactly with what the publisher had confirmed, by the reference model
(`tests/support/reference.py`, apart from the ledger's fold and projection): every version of
every listing is in `ledger` with exactly the state the rules give, nothing else is; each
agency's latest view change is the model's row of the final state; the copies equal their views.
The ledger's own re-reading after each crash must not look like a replay: `rejected` stays empty.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from services.core.connection import KafkaConnection
from services.core.events import Event, ListingState, Rejected, ViewChanged
from services.core.views import ViewRow
from tests.integration.ledger.harness import Backbone, applied_once, wait_for, wait_for_copy
from tests.support import reference
from tests.support.backbones import running_backbone
from tests.support.factory import Ledgerbook

KILLS = 4
EVERY_S = 6.0
RATE = 25.0  # listing events per second
COPIES = ("civil-aviation", "railway")


class Load(threading.Thread):
    """Issues, corrections and revocations at `RATE`, published (and confirmed) one by one."""

    def __init__(self, backbone: Backbone, book: Ledgerbook) -> None:
        super().__init__(daemon=True)
        self.backbone, self.book = backbone, book
        self.rng, self.live = random.Random(10), list[str]()
        self.failure: BaseException | None = None
        self.stopping = False

    def next_event(self, i: int) -> Event:
        roll = self.rng.random()
        if self.live and roll < 0.35:
            return self.book.correct(self.rng.choice(self.live), legal_basis=f"basis {i}")
        if self.live and roll < 0.45:
            return self.book.revoke(self.live.pop(self.rng.randrange(len(self.live))))
        listing_id = f"K-{i:05d}"
        self.live.append(listing_id)
        measures = self.rng.choice([("flight_ban",), ("rail_ban",), ("flight_ban", "rail_ban")])
        return self.book.issue(listing_id, measures=measures, subject_ref=f"s-{listing_id}")

    def run(self) -> None:
        i = 0
        try:
            while not self.stopping:
                self.backbone.publish([self.next_event(i)])
                i += 1
                time.sleep(1 / RATE)
        except BaseException as e:
            self.failure = e


@pytest.fixture
def backbone(kafka_admin: KafkaConnection, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backbone]:
    with running_backbone(kafka_admin, tmp_path_factory.mktemp("crashes")) as running:
        yield running


def test_repeated_kill_9_under_load_loses_and_invents_nothing(backbone: Backbone) -> None:
    stores = {a: f"sqlite:///{backbone.folder / f'{a}.db'}" for a in COPIES}
    for agency, url in stores.items():
        backbone.start_copy(agency, url)
    backbone.start_ledger(store="rocksdb://")
    load = Load(backbone, backbone.book())
    load.start()
    for _ in range(KILLS):
        time.sleep(EVERY_S)
        backbone.assert_alive()
        backbone.kill("ledger")
        backbone.start_ledger(store="rocksdb://")
    time.sleep(EVERY_S)
    load.stopping = True
    load.join(timeout=30)
    assert load.failure is None
    want = reference.history(backbone.events)

    def ledger_complete() -> dict[tuple[str, int], list[ListingState]] | None:
        backbone.assert_alive()
        have: dict[tuple[str, int], list[ListingState]] = {}
        for state in backbone.read(backbone.topics.ledger):
            assert isinstance(state, ListingState)
            have.setdefault((state.envelope.listing_id, state.envelope.version), []).append(state)
        return have if have.keys() >= want.keys() else None

    have = wait_for("every acknowledged version in ledger", ledger_complete, 120, every=1.0)
    assert have.keys() == want.keys()
    wrong = [k for k, copies in have.items() if any(reference.disagreements(want[k], c) for c in copies)]
    assert not wrong, f"{len(wrong)} ledger records differ from the fold, e.g. {wrong[:3]}"

    final = reference.truths(backbone.events)
    for agency, url in stores.items():
        rows: dict[str, ViewRow] = reference.views(final, agency, backbone.policy)
        latest: dict[str, ViewChanged] = {}
        for change in backbone.read(backbone.topics.views(agency)):
            assert isinstance(change, ViewChanged)
            latest[change.envelope.listing_id] = change
        upserts = {k: ViewRow.from_change(c) for k, c in latest.items() if c.op == "upsert"}
        assert upserts == rows
        wait_for_copy(backbone, agency, url, rows, timeout=120)
        applied_once(backbone, agency)
    refused = [r for r in backbone.read(backbone.topics.rejected) if isinstance(r, Rejected)]
    assert refused == [], f"the ledger refused its own re-reading: {[r.reason_code for r in refused][:5]}"
    assert len(backbone.events) > RATE * EVERY_S * KILLS * 0.6, "the load must run through the crashes"
