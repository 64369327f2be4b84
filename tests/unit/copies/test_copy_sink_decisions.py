"""The sink's decisions without a broker: the real `Sink` on a real SQLite copy, fed by in-process ports.

What it applies and passes over, what it acknowledges (once, with what the copy holds), what goes
to `rejected` (and that the good messages around a bad one are applied), the acknowledgements a
broker failure left in the outbox re-sent unchanged, the positions committed to the group, and the
rolling verification's budget. tests/integration/copies runs the same sink on the real broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.copies.settings import CopyOptions, CopySettings
from services.copies.sink import STEP_ROWS, Budget, Sink
from services.core.connection import KafkaConnection
from services.core.copystore import CopyStore, open_store
from services.core.digest import bucket_of
from services.core.errors import BrokerUnavailable
from services.core.events import CopyApplied, CopyDigest, Rejected
from services.core.policy import load_policy
from services.core.serde import encode
from services.core.settings import KafkaSettings, KeystoreSettings, SecretSettings
from services.core.topics import Topics, copy_key
from tests.unit.copies.changes import AGENCY, by_reconciler, delete, row, upsert
from tests.unit.copies.fakes import FakeFeed, FakeReporter
from tests.unit.copies.test_copystore_behaviour import execute

TOPICS = Topics("t.")
AT = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "copy.db"


@pytest.fixture
def copy(path: Path) -> Iterator[CopyStore]:
    store = open_store(f"sqlite:///{path}", AGENCY)
    yield store
    store.close()


@pytest.fixture
def feed() -> FakeFeed:
    return FakeFeed(TOPICS.views(AGENCY))


def sink_on(store: CopyStore, feed: FakeFeed, reporter: FakeReporter, **options: float) -> Sink:
    kafka = KafkaSettings.of(KafkaConnection("unused:9092"), namespace="t.")
    settings = CopySettings(kafka, SecretSettings(), CopyOptions(**options), KeystoreSettings())  # type: ignore[arg-type]
    sink = Sink(AGENCY, store, settings, load_policy(), feed, reporter, clock=lambda: AT)
    sink.start()
    return sink


def drain(sink: Sink) -> None:
    while sink.poll():
        pass


def test_a_batch_is_applied_acknowledged_once_each_and_its_positions_committed_to_the_group(
    copy: CopyStore, feed: FakeFeed
) -> None:
    changes = [upsert(row(f"L-{i}")) for i in range(8)] + [
        upsert(row("L-1", 2, case_ref="new")),
        delete("L-2", 2),
    ]
    places = [feed.change(c) for c in changes]
    reporter = FakeReporter()
    sink = sink_on(copy, feed, reporter, batch=100)
    assert sink.poll() == len(changes)  # one batch, one transaction

    assert {r.listing_id: r.version for r in copy.rows()} == {
        f"L-{i}": 2 if i == 1 else 1 for i in range(8) if i != 2
    }
    acks = reporter.on(TOPICS.copies_applied(AGENCY))
    assert sorted((a.partition, a.offset) for a in acks if isinstance(a, CopyApplied)) == sorted(places)
    keys = {key for topic, key, _ in reporter.sent if topic == TOPICS.copies_applied(AGENCY)}
    assert copy_key(AGENCY, "L-1") in keys
    assert copy.unsent_acks() == []
    assert feed.committed == copy.positions() and sum(copy.positions().values()) == len(changes)


def test_positions_whose_commit_to_the_group_was_lost_are_committed_again_with_the_next_digest(
    copy: CopyStore, feed: FakeFeed
) -> None:
    for i in range(5):
        feed.change(upsert(row(f"L-{i}")))
    sink = sink_on(copy, feed, FakeReporter(), batch=100)
    assert sink.poll() == 5
    feed.committed = {}  # the batch's asynchronous commit failed (a coordinator moving): nothing retries it
    assert sink.poll() == 0  # idle, caught up: the digest goes out, and the positions with it
    assert feed.committed == copy.positions() and sum(feed.committed.values()) == 5


def test_a_bad_message_in_the_middle_of_a_batch_is_rejected_and_the_good_ones_around_it_apply(
    copy: CopyStore, feed: FakeFeed
) -> None:
    feed.append(encode(upsert(row("L-a"))), "L-a", partition=0)
    feed.append(b"garbage", "L-x", partition=0)
    leaky = upsert(row("L-leak")).model_copy(update={"fields": {"details.amount_owed": "1000"}})
    feed.append(encode(leaky), "L-leak", partition=0)
    feed.append(encode(upsert(row("L-rail"), agency="railway")), "L-rail", partition=0)
    revoked = upsert(row("L-dead")).model_copy(update={"status": "revoked"})  # no copy may hold it as a row
    feed.append(encode(revoked), "L-dead", partition=0)
    feed.append(encode(upsert(row("L-b"))), "L-b", partition=0)
    reporter = FakeReporter()
    sink = sink_on(copy, feed, reporter, batch=100)
    assert sink.poll() == 6

    assert [r.listing_id for r in copy.rows()] == ["L-a", "L-b"]
    refused = [e for e in reporter.on(TOPICS.rejected) if isinstance(e, Rejected)]
    codes = [(1, "undecodable"), (2, "not_entitled"), (3, "wrong_agency"), (4, "not_a_view_row")]
    assert [(r.offset, r.reason_code) for r in refused] == codes
    assert refused[0].payload == b"garbage" and refused[0].source_topic == feed.topic
    assert [a.offset for a in reporter.on(TOPICS.copies_applied(AGENCY)) if isinstance(a, CopyApplied)] == [
        0,
        5,
    ]
    assert copy.positions() == {0: 6} and feed.committed == {0: 6}


def test_a_repair_the_ledger_overtook_is_passed_over_and_acknowledged_with_what_the_copy_holds(
    copy: CopyStore, feed: FakeFeed
) -> None:
    for change in [
        upsert(row("L-1")),
        upsert(row("L-1", 2, case_ref="corrected")),
        by_reconciler(upsert(row("L-1"))),
    ]:
        feed.change(change)
    reporter = FakeReporter()
    drain(sink_on(copy, feed, reporter))
    assert copy.row("L-1") == row("L-1", 2, case_ref="corrected")
    last = [a for a in reporter.on(TOPICS.copies_applied(AGENCY)) if isinstance(a, CopyApplied)][-1]
    assert (last.offset, last.envelope.version, last.row_hash) == (
        2,
        2,
        row("L-1", 2, case_ref="corrected").row_hash(),
    )


def test_the_ledger_s_same_version_delivered_twice_is_applied_and_acknowledged_once(
    copy: CopyStore, feed: FakeFeed
) -> None:
    feed.change(upsert(row("L-1")))
    feed.change(upsert(row("L-1")))
    reporter = FakeReporter()
    drain(sink_on(copy, feed, reporter))
    assert len(reporter.on(TOPICS.copies_applied(AGENCY))) == 1
    assert sum(copy.positions().values()) == 2


def test_acknowledgements_the_broker_did_not_confirm_are_re_sent_unchanged_by_the_next_sink(
    copy: CopyStore, feed: FakeFeed
) -> None:
    for i in range(5):
        feed.change(upsert(row(f"L-{i}")))
    failing = FakeReporter(failing=True)
    sink = sink_on(copy, feed, FakeReporter(), batch=100)
    sink.reporter = failing
    with pytest.raises(BrokerUnavailable):
        sink.poll()
    kept = copy.unsent_acks()
    assert len(kept) == 5 and len(list(copy.rows())) == 5  # applied and kept, in one transaction

    again = FakeReporter()
    restarted = sink_on(copy, feed, again)
    assert restarted.poll() == 0  # nothing re-applied: the store's positions are past the batch
    assert [encode(e) for e in again.on(TOPICS.copies_applied(AGENCY))] == [ack for _, _, ack in kept]
    assert copy.unsent_acks() == []


class Down(FakeReporter):
    """A producer whose broker went down: it queues, confirms nothing, and a flush times out."""

    def poll(self, timeout: float) -> None:
        pass

    def flush(self, timeout: float = 30.0) -> None:
        raise BrokerUnavailable(f"{len(self.queued)} messages not confirmed within {timeout} s (test)")


def test_a_sink_closing_unconfirmed_says_so_and_keeps_them_for_the_next_start(
    copy: CopyStore, feed: FakeFeed, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(4):
        feed.change(upsert(row(f"L-{i}")))
    sink = sink_on(copy, feed, FakeReporter(), batch=2)
    sink.reporter = Down()
    assert sink.poll() == 2  # sent, not waited for (fewer than IN_FLIGHT_BATCHES batches' worth)
    sink.close()  # no error: what the broker did not confirm is kept
    assert "closes with 2 reports" in caplog.text and "re-sent at the next start" in caplog.text
    kept = copy.unsent_acks()
    assert len(kept) == 2

    again = FakeReporter()
    restarted = sink_on(copy, feed, again)
    drain(restarted)
    sent = [encode(e) for e in again.on(TOPICS.copies_applied(AGENCY))]
    assert sent[:2] == [ack for _, _, ack in kept] and len(sent) == 4  # re-sent first, unchanged
    assert copy.unsent_acks() == []


def test_acknowledgements_the_broker_refused_stop_the_sink_and_stay_kept_for_the_next(
    copy: CopyStore, feed: FakeFeed
) -> None:
    for i in range(3):
        feed.change(upsert(row(f"L-{i}")))
    sink = sink_on(copy, feed, FakeReporter(refusing=True), batch=100)
    with pytest.raises(BrokerUnavailable, match="refused 3 reports"):
        sink.poll()
    kept = copy.unsent_acks()
    assert len(kept) == 3 and len(list(copy.rows())) == 3  # applied, and its reports kept

    again = FakeReporter()
    sink_on(copy, feed, again).poll()
    assert [encode(e) for e in again.on(TOPICS.copies_applied(AGENCY))] == [ack for _, _, ack in kept]
    assert copy.unsent_acks() == []


def test_the_next_batch_is_read_while_one_is_taken_and_taken_by_the_next_poll_once(
    copy: CopyStore, feed: FakeFeed
) -> None:
    places = [feed.append(encode(upsert(row(f"L-{i}"))), f"L-{i}", partition=0) for i in range(7)]
    reporter = FakeReporter()
    sink = sink_on(copy, feed, reporter, batch=3)
    assert sink.poll() == 3
    assert sorted(r.listing_id for r in copy.rows()) == ["L-0", "L-1", "L-2"]  # its batch, taken
    assert feed.at[0] == 6 and feed.committed == {0: 3}  # the next one read, not yet taken
    drain(sink)
    assert sorted(r.listing_id for r in copy.rows()) == [f"L-{i}" for i in range(7)]
    acks = [a for a in reporter.on(TOPICS.copies_applied(AGENCY)) if isinstance(a, CopyApplied)]
    assert [(a.partition, a.offset) for a in acks] == places  # each once, in order
    assert copy.positions() == {0: 7} and feed.committed == {0: 7}


def test_a_batch_read_ahead_when_the_writer_failed_is_taken_by_the_next_sink(
    copy: CopyStore, feed: FakeFeed
) -> None:
    for i in range(5):
        feed.append(encode(upsert(row(f"L-{i}"))), f"L-{i}", partition=0)
    sink = sink_on(copy, feed, FakeReporter(refusing=True), batch=2)
    with pytest.raises(BrokerUnavailable, match="refused 2 reports"):
        sink.poll()
    assert feed.at[0] == 4 and copy.positions() == {0: 2}  # read ahead, never taken
    sink.close()

    again = FakeReporter()
    drain(sink_on(copy, feed, again, batch=2))
    assert sorted(r.listing_id for r in copy.rows()) == [f"L-{i}" for i in range(5)]
    acks = [a for a in again.on(TOPICS.copies_applied(AGENCY)) if isinstance(a, CopyApplied)]
    assert [a.offset for a in acks] == [0, 1, 2, 3, 4]


def test_acknowledgements_are_cleared_as_confirmed_without_waiting_batch_by_batch(
    copy: CopyStore, feed: FakeFeed
) -> None:
    for i in range(6):
        feed.change(upsert(row(f"L-{i}")))
    reporter = Unhurried()
    sink = sink_on(copy, feed, reporter, batch=2)
    assert sink.poll() == 2 and sink.poll() == 2  # nothing confirmed yet: the sink did not wait
    assert len(copy.unsent_acks()) == 4 and sink.in_flight == 4
    reporter.confirm()  # the broker confirms the first four; the next batch clears them
    assert sink.poll() == 2 and len(copy.unsent_acks()) == 2
    assert sink.poll() == 0  # out of changes: waits for every confirmation, clears the outbox
    assert copy.unsent_acks() == [] and sink.in_flight == 0
    assert len(reporter.on(TOPICS.copies_applied(AGENCY))) == 6


class Unhurried(FakeReporter):
    """A broker that confirms only when told (`confirm`) or waited for (`flush`)."""

    def poll(self, timeout: float) -> None:
        pass

    def confirm(self) -> None:
        self.flush()


def test_the_sink_seeks_to_the_store_s_positions_and_digests_what_it_holds(
    copy: CopyStore, feed: FakeFeed
) -> None:
    for i in range(4):
        feed.append(encode(upsert(row(f"L-{i}"))), f"L-{i}", partition=1)
    copy.apply(upsert(row("L-0")), 1, 0)
    copy.apply(upsert(row("L-1")), 1, 1)
    reporter = FakeReporter()
    sink = sink_on(copy, feed, reporter)
    assert feed.at == {0: 0, 1: 2, 2: 0}
    drain(sink)
    assert [a.offset for a in reporter.on(TOPICS.copies_applied(AGENCY)) if isinstance(a, CopyApplied)] == [
        2,
        3,
    ]
    sink.poll()  # idle after applying: a digest goes out
    digest = reporter.on(TOPICS.copies_digests(AGENCY))[-1]
    assert isinstance(digest, CopyDigest) and digest.rows == 4
    assert digest.root == copy.rescan_digest().root()


def test_a_hand_edit_reaches_the_digest_through_rolling_verification(
    copy: CopyStore, feed: FakeFeed, path: Path
) -> None:
    for i in range(20):
        feed.change(upsert(row(f"L-{i}")))
    reporter = FakeReporter()
    sink = sink_on(copy, feed, reporter, verify_rows_per_minute=60_000_000)
    drain(sink)
    execute(f"sqlite:///{path}", "UPDATE copy_rows SET measures = '[]' WHERE listing_id = 'L-7'")
    assert copy.digest().root() != copy.rescan_digest().root()
    for _ in range(600):  # a round is 257 steps from a random bucket; the budget refills by the clock
        sink.poll()
        if copy.digest().root() == copy.rescan_digest().root():
            break
    assert copy.digest().root() == copy.rescan_digest().root()
    assert copy.verify(bucket_of("L-7")).buckets == []  # folded in already


def test_the_verification_budget_bounds_rows_read_per_minute() -> None:
    now = [0.0]
    budget = Budget(per_minute=60 * (STEP_ROWS + 10), monotonic=lambda: now[0])  # a 10-row step a second
    steps = 0
    for _ in range(600):  # a minute, in tenths of a second
        now[0] += 0.1
        budget.refill()
        while budget.due():
            budget.spend(10)
            steps += 1
    assert 59 <= steps <= 61  # the rate, give or take the step under way
    now[0] += 3600  # idle for an hour: at most one second's worth saved, no burst
    budget.refill()
    burst = 0
    while budget.due():
        budget.spend(10)
        burst += 1
    assert burst <= 2


def test_a_stuck_sink_is_unhealthy_though_it_saw_no_work(copy: CopyStore, feed: FakeFeed) -> None:
    """Blocked in a write, the sink fetches nothing: the lag it noted last says no work pending."""
    now = [AT]
    kafka = KafkaSettings.of(KafkaConnection("unused:9092"), namespace="t.")
    settings = CopySettings(kafka, SecretSettings(), CopyOptions(sla_s=2), KeystoreSettings())
    sink = Sink(AGENCY, copy, settings, load_policy(), feed, FakeReporter(), clock=lambda: now[0])
    sink.start()
    sink.poll()
    assert sink.health().healthy
    now[0] = AT + timedelta(seconds=10)  # no poll came round since
    health = sink.health()
    assert not health.healthy and any("loop has not come round for 10 s" in r for r in health.reasons)
    sink.poll()
    assert sink.health().healthy
