"""Property: whatever faults hit the copies, the reconciler names exactly the listings that differ
from their views (no misses, no false alarms), and after its repairs every copy equals its view.

Copies are real SQLite `CopyStore`s fed the ledger's view changes. Faults are injected
as they happen in the field: a change the sink dropped, a duplicate delivery, a row
reverted to an older version, a row added or deleted or altered by hand — either
behind the sink's back (its incremental digest does not see it) or restored together
with the digest, as a backup restore would.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.core.copystore import Applied, CopyStore, columns, open_store
from services.core.copystore.probe import StoreProbe
from services.core.crypto import Keystore
from services.core.digest import MODULUS, bucket_of, leaf
from services.core.events import CopyApplied, Envelope, Event, ListingState, ViewChanged
from services.core.listing import evolve
from services.core.policy import Policy
from services.core.views import ViewRow, view_change
from services.reconciler.acks import Sla
from services.reconciler.engine import Reconciler, Timing
from tests.support import reference
from tests.support.factory import T0, Ledgerbook, policy_with_keys

AGENCIES = ("civil-aviation", "railway", "court")
MEASURES = ("flight_ban", "rail_ban", "high_consumption")
FAULTS = ("drop", "duplicate", "revert", "add", "delete", "alter")
STEPS = ("correct", "object", "exempt", "revoke")
TIMING = Timing(Sla(timedelta(seconds=60), timedelta(seconds=30)), timedelta(seconds=60))
LATER = T0 + timedelta(days=1)  # every change is long past its SLA


@st.composite
def listings(draw: st.DrawFn) -> list[tuple[list[str], list[str]]]:
    """Per listing: its measures and the changes that follow its issue."""
    measure_sets = st.lists(st.sampled_from(MEASURES), min_size=1, max_size=3, unique=True)
    steps = st.lists(st.sampled_from(STEPS), max_size=3)
    return draw(st.lists(st.tuples(measure_sets, steps), min_size=3, max_size=10))


FAULT_LISTS = st.lists(
    st.tuples(st.sampled_from(AGENCIES), st.integers(0, 9), st.sampled_from(FAULTS), st.booleans()),
    max_size=8,
)


@dataclass
class Backbone:
    """The ledger's states and every agency's view changes, in emission order."""

    policy: Policy
    states: dict[str, ListingState] = field(default_factory=dict)
    changes: dict[str, list[ViewChanged]] = field(default_factory=lambda: {a: [] for a in AGENCIES})
    events: list[Event] = field(default_factory=list)

    def record(self, event: Event) -> None:
        """Play the ledger (its own fold and projection make the changes the copies are fed)."""
        self.events.append(event)
        listing_id = event.envelope.listing_id
        before = self.states.get(listing_id)
        after = evolve(before, event)  # type: ignore[arg-type]
        self.states[listing_id] = after
        for agency in AGENCIES:
            change = view_change(before, after, agency, self.policy, T0)
            if change is not None:
                self.changes[agency].append(change)

    def expected(self, agency: str) -> dict[str, ViewRow]:
        """The oracle: the reference model's view, computed apart from the ledger's fold and projection."""
        return reference.views(reference.truths(self.events), agency, self.policy)


def build(policy: Policy, book: Ledgerbook, plan: list[tuple[list[str], list[str]]]) -> Backbone:
    backbone = Backbone(policy)
    for i, (measures, steps) in enumerate(plan):
        lid = f"L-{i}"
        backbone.record(book.issue(lid, measures=tuple(measures)))
        for step in steps:
            if backbone.states[lid].status in ("revoked", "expired"):
                break
            if step == "correct":
                backbone.record(book.correct(lid, measures=list(reversed(MEASURES[: 1 + i % 3]))))
            elif step == "object" and backbone.states[lid].status == "active":
                backbone.record(book.object(lid, f"obj-{i}"))
            elif step == "exempt":
                backbone.record(book.exempt(lid, backbone.states[lid].measures[0]))
            elif step == "revoke":
                backbone.record(book.revoke(lid))
    return backbone


# --- faults behind the sink's back --------------------------------------------------------


def bump(db: sqlite3.Connection, bucket: int, value: int, rows: int) -> None:
    found = db.execute("SELECT accumulator, rows FROM copy_buckets WHERE bucket = ?", (bucket,)).fetchone()
    accumulator, count = (int(found[0], 16), found[1]) if found else (0, 0)
    db.execute(
        "INSERT OR REPLACE INTO copy_buckets (bucket, accumulator, rows) VALUES (?, ?, ?)",
        (bucket, f"{(accumulator + value) % MODULUS:064x}", count + rows),
    )


def write_row(db: sqlite3.Connection, listing_id: str, row: ViewRow | None, with_digest: bool) -> None:
    """Put `row` (or no row) in the copy as a DBA would: with the digest (a restore) or without."""
    old = db.execute("SELECT bucket, leaf FROM copy_rows WHERE listing_id = ?", (listing_id,)).fetchone()
    if with_digest and old:
        bump(db, old[0], -int(old[1], 16), -1)
    db.execute("DELETE FROM copy_rows WHERE listing_id = ?", (listing_id,))
    if row is None:
        return
    value = leaf(row.listing_id, row.version, row.status, row.row_hash())
    kept = f"{value:064x}" if with_digest else (old[1] if old else "0" * 64)
    bucket = bucket_of(listing_id)
    db.execute(
        f"INSERT INTO copy_rows ({', '.join(columns.COLUMNS)}, bucket, leaf) VALUES ({', '.join('?' * 11)})",
        (*columns.encode(row), bucket, kept),
    )
    if with_digest:
        bump(db, bucket, value, 1)


@dataclass
class Copy:
    agency: str
    path: Path
    store: CopyStore
    offset: int = 0


def fill(copy: Copy, changes: list[ViewChanged], dropped: set[str]) -> None:
    """Apply the view stream; the last change of a dropped listing is lost (acknowledged, not written)."""
    last = {c.envelope.listing_id: i for i, c in enumerate(changes)}
    for i, change in enumerate(changes):
        if not (change.envelope.listing_id in dropped and last[change.envelope.listing_id] == i):
            assert copy.store.apply(change, 0, i) is Applied.APPLIED
    copy.offset = len(changes)


def inject(copy: Copy, backbone: Backbone, listing: int, fault: str, with_digest: bool) -> None:
    lid = f"L-{listing}"
    mine = [c for c in backbone.changes[copy.agency] if c.envelope.listing_id == lid]
    current = copy.store.row(lid)
    if fault == "duplicate" and mine:  # a re-delivery of an offset already applied changes nothing
        offset = backbone.changes[copy.agency].index(mine[-1])
        fresh = offset >= copy.store.positions().get(0, 0)  # only a dropped last change is still ahead
        assert (copy.store.apply(mine[-1], 0, offset) is Applied.APPLIED) == fresh
        return
    db = sqlite3.connect(copy.path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        if fault == "revert" and mine and mine[0].op == "upsert":
            write_row(db, lid, ViewRow.from_change(mine[0]), with_digest)
        elif fault == "add":
            template = next(iter(backbone.expected(copy.agency).values()), None) or current
            if template is not None:
                write_row(
                    db,
                    f"X-{listing}",
                    template.model_copy(update={"listing_id": f"X-{listing}"}),
                    with_digest,
                )
        elif fault == "delete" and current is not None:
            write_row(db, lid, None, with_digest)
        elif fault == "alter" and current is not None:
            write_row(db, lid, current.model_copy(update={"fields": {"case_ref": "forged"}}), with_digest)
        db.execute("COMMIT")
    finally:
        db.close()


# --- the reconciler's side ----------------------------------------------------------------


def reconciler(backbone: Backbone) -> Reconciler:
    engine = Reconciler(backbone.policy, AGENCIES, TIMING)
    for state in backbone.states.values():
        engine.on_state(state, T0)
    for changes in backbone.changes.values():
        for offset, change in enumerate(changes):
            engine.on_view(change, 0, offset, T0)
    return engine


def reconcile_all(engine: Reconciler, copies: list[Copy]) -> dict[tuple[str, str], ViewChanged]:
    """A shallow pass (the sink's incremental digest) then a deep one (recomputed from rows)."""
    repairs: dict[tuple[str, str], ViewChanged] = {}
    for copy in copies:
        probe = StoreProbe(copy.store)
        for buckets in (copy.store.digest().hex_buckets(), probe.digest()):
            outcome, _ = engine.reconcile(copy.agency, buckets, probe, LATER)
            assert len(outcome.findings) == len(outcome.repairs)
            for change in outcome.repairs:
                key = (change.view_agency, change.envelope.listing_id)
                assert key not in repairs, f"{key} reported twice"
                repairs[key] = change
    return repairs


def repair(engine: Reconciler, copy: Copy, change: ViewChanged) -> str:
    engine.on_view(change, 0, copy.offset, LATER)
    assert copy.store.apply(change, 0, copy.offset) is Applied.APPLIED
    env = Envelope(event_id=f"ack-{copy.offset}", listing_id=change.envelope.listing_id,
                   version=change.envelope.version, agency=copy.agency,
                   occurred_at=LATER, recorded_at=LATER)  # fmt: skip
    ack = CopyApplied(envelope=env, copy_agency=copy.agency, op=change.op, partition=0, offset=copy.offset,
                      row_hash="", applied_at=LATER)  # fmt: skip
    copy.offset += 1
    [finding] = engine.on_applied(ack).findings
    return finding.kind


@dataclass(frozen=True)
class Keyed:
    """The policy with its keystore; a short repr keeps hypothesis's failure reports readable."""

    policy: Policy = field(repr=False)
    keystore: Keystore = field(repr=False)


@pytest.fixture(scope="module")
def keyed_policy(tmp_path_factory: pytest.TempPathFactory) -> Keyed:
    return Keyed(*policy_with_keys(tmp_path_factory.mktemp("keys")))


Plan = list[tuple[list[str], list[str]]]
Faults = list[tuple[str, int, str, bool]]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=listings(), faults=FAULT_LISTS)
def test_every_fault_is_found_nothing_else_is_and_repairs_restore_every_copy(
    keyed_policy: Keyed, plan: Plan, faults: Faults
) -> None:
    backbone = build(keyed_policy.policy, Ledgerbook(keyed_policy.keystore), plan)
    with tempfile.TemporaryDirectory() as tmp:
        copies = [Copy(a, Path(tmp) / f"{a}.db", open_store(f"sqlite:///{tmp}/{a}.db", a)) for a in AGENCIES]
        try:
            corrupt(copies, backbone, [(a, i % len(plan), f, d) for a, i, f, d in faults])
            truth = {(c.agency, lid) for c in copies for lid in differing(c, backbone)}
            engine = reconciler(backbone)
            repairs = reconcile_all(engine, copies)
            assert set(repairs) == truth  # no misses, no false alarms
            event(f"copies listings that differ: {min(len(truth), 4)}{'+' if len(truth) >= 4 else ''}")
            for (agency, _), change in sorted(repairs.items()):
                assert repair(engine, next(c for c in copies if c.agency == agency), change) == "repaired"
            assert [differing(c, backbone) for c in copies] == [set(), set(), set()]
            assert reconcile_all(engine, copies) == {}
        finally:
            for copy in copies:
                copy.store.close()


def corrupt(copies: list[Copy], backbone: Backbone, faults: Faults) -> None:
    for copy in copies:
        dropped = {f"L-{i}" for a, i, f, _ in faults if a == copy.agency and f == "drop"}
        fill(copy, backbone.changes[copy.agency], dropped)
    for agency, listing, fault, with_digest in faults:
        if fault != "drop":
            inject(next(c for c in copies if c.agency == agency), backbone, listing, fault, with_digest)


def differing(copy: Copy, backbone: Backbone) -> set[str]:
    """The ground truth: listings whose row in the copy is not the row of the view."""
    rows, expected = {row.listing_id: row for row in copy.store.rows()}, backbone.expected(copy.agency)
    return {lid for lid in rows.keys() | expected.keys() if rows.get(lid) != expected.get(lid)}
