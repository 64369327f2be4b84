"""Time to detect and repair one stale listing in an agency's copy of N listings, and the bytes it costs.

The copy is a real SQLite `CopyStore` filled the way its sink fills it (one `apply`
per view change); the reconciler's engine holds the expected view of N listings. One
listing is then made stale the Luoshan way — revoked in the ledger, still active in
the copy, as after a restore from an old backup — and the benchmark times:

  detect (shallow)  compare the copy's incremental digest (what it publishes as CopyDigest),
                    narrow bucket by bucket to the listing, plan the repair
  repair            the copy applies the repair; its acknowledgement settles the finding
  detect (deep)     a field edited by hand behind the sink's back: the copy recomputes its
                    digest from its rows, then the same narrowing
  rolling verify    the reconciler re-reads a few buckets of the copy from its rows per check
                    (default: 26 of 256 a second, all in 10 s): the cost of one pass, and how
                    many passes it takes to find a status edited by hand
  misplaced, reindex  a row inserted by hand under a copied bucket: the full read of ids that
                    finds it, and the copy's rebuild of its caches and running digest

Bytes exchanged are what the probe's answers weigh as JSON (the digest, sub-bucket
hashes and leaves), against the copy's size on disk and what sending every leaf
would cost. The broker is not involved: its latency is the Luoshan demo's to show.

    python benchmarks/bench_reconcile.py [--listings 100000 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.core.copystore import CopyStore, open_store
from services.core.copystore.probe import StoreProbe
from services.core.digest import bucket_of
from services.core.events import Envelope, ListingState, ViewChanged
from services.core.listing import evolve
from services.core.policy import Policy
from services.core.views import project, upsert_change, view_change
from services.reconciler.engine import Reconciler
from services.reconciler.probe import wire_size
from tests.support.factory import T0, Ledgerbook, policy_with_keys
from tests.unit.reconciler.support import TIMING, applied

AGENCY = "civil-aviation"
LATER = T0 + timedelta(days=1)
STALE, EDITED, ROLLED = "L-0000007", "L-0000042", "L-0000077"
CHECK_S, CYCLE_S = 1.0, 10.0  # the reconciler's defaults: a check a second, every bucket in 10 s


def states(book: Ledgerbook, n: int) -> Iterator[ListingState]:
    """N listings cloned from one sealed issue (sealing a million would dwarf the measurement)."""
    base = evolve(None, book.issue("L-0000000", measures=("flight_ban", "rail_ban")))
    for i in range(n):
        yield base.model_copy(
            update={"envelope": base.envelope.model_copy(update={"listing_id": f"L-{i:07}"})}
        )


def build(policy: Policy, book: Ledgerbook, n: int, store: CopyStore) -> tuple[Reconciler, float]:
    """The expected view (engine) and the copy, equal but for the revocation the copy lost."""
    engine, started = Reconciler(policy, [AGENCY], TIMING), time.perf_counter()
    stale: ListingState | None = None
    for offset, state in enumerate(states(book, n)):
        stale = state if state.envelope.listing_id == STALE else stale
        engine.on_state(state, T0)
        row = project(state, AGENCY, policy)
        assert row is not None
        env = Envelope(event_id=f"e{offset}", listing_id=row.listing_id, version=1, agency="ledger",
                       occurred_at=T0, recorded_at=T0)  # fmt: skip
        change = upsert_change(row, env, AGENCY, "issued")
        engine.on_view(change, 0, offset, T0)
        store.apply(change, 0, offset)
        engine.on_applied(applied(change, offset, T0))
    built = time.perf_counter() - started
    book.heads[STALE] = book.heads["L-0000000"]  # every clone shares the template's version 1
    revoked = evolve(stale, book.revoke(STALE))
    engine.on_state(revoked, T0)
    delete = view_change(stale, revoked, AGENCY, policy, T0)
    assert delete is not None
    engine.on_view(delete, 0, n, T0)
    engine.on_applied(applied(delete, n, T0))  # acknowledged; then the copy was restored from a backup
    return engine, built


def edit_by_hand(path: Path, listing_id: str) -> None:
    """A DBA's UPDATE: the row changes, the sink's digest does not (see copystore/sql.py)."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute(
            "UPDATE copy_rows SET fields = ? WHERE listing_id = ?", ('{"case_ref":"edited"}', listing_id)
        )


@dataclass(frozen=True)
class Detection:
    seconds: float
    rescan_seconds: float
    bytes: int
    kinds: list[str]
    repair: ViewChanged


def detect(engine: Reconciler, store: CopyStore, deep: bool) -> Detection:
    """One anti-entropy pass, from the copy's digest to the planned repair."""
    probe = StoreProbe(store)
    started = time.perf_counter()
    buckets = probe.digest() if deep else store.digest().hex_buckets()
    rescan = time.perf_counter() - started
    outcome, report = engine.reconcile(AGENCY, buckets, probe, LATER)
    took = time.perf_counter() - started
    [change] = outcome.repairs
    return Detection(took, rescan, report.bytes_exchanged, [f.kind for f in outcome.findings], change)


def repair(engine: Reconciler, store: CopyStore, change: ViewChanged, offset: int) -> float:
    """The copy applies the repair; its acknowledgement settles the finding."""
    started = time.perf_counter()
    engine.on_view(change, 0, offset, LATER)
    store.apply(change, 0, offset)
    [done] = engine.on_applied(applied(change, offset, LATER)).findings
    assert done.kind == "repaired"
    return time.perf_counter() - started


def run(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        policy, keystore = policy_with_keys(Path(tmp) / "keys")
        path = Path(tmp) / "copy.db"
        store = open_store(f"sqlite:///{path}", AGENCY)
        try:
            measure(n, policy, Ledgerbook(keystore), store, path)
        finally:
            store.close()


def measure(n: int, policy: Policy, book: Ledgerbook, store: CopyStore, path: Path) -> None:
    engine, built = build(policy, book, n, store)
    print(f"\n{n:,} listings: view and copy built in {built:.1f} s ({n / built:,.0f} listings/s)")
    shallow = detect(engine, store, deep=False)
    print(f"  detect, incremental digest: {shallow.seconds * 1000:8.1f} ms, {shallow.bytes:>7,} bytes -> "
          f"{shallow.kinds}")  # fmt: skip
    fixed = repair(engine, store, shallow.repair, n + 1)
    print(f"  repair applied and acknowledged: {fixed * 1000:.1f} ms")
    edit_by_hand(path, EDITED)
    deep = detect(engine, store, deep=True)
    rehash = f"{deep.rescan_seconds * 1000:.0f} ms of it the copy rehashing its rows"
    found = f"{deep.bytes:>7,} bytes -> {deep.kinds} ({rehash})"
    print(f"  detect, digest from rows:   {deep.seconds * 1000:8.1f} ms, {found}")
    repair(engine, store, deep.repair, n + 2)
    assert engine.healthy(AGENCY, StoreProbe(store).digest())
    rolling(engine, store, path, n + 3)
    misplaced_and_reindex(store, path)
    size, leaves = path.stat().st_size, round(n * _leaf_bytes(store))
    print(f"  copy: {size:,} bytes on disk, {leaves:,} bytes as leaves; one detection exchanged "
          f"{shallow.bytes:,} bytes = {100 * shallow.bytes / size:.4f}% of the copy")  # fmt: skip


def rolling(engine: Reconciler, store: CopyStore, path: Path, offset: int) -> None:
    """Rolling verification: one pass over an intact stretch, then passes until a hand edit shows."""
    probe, step = StoreProbe(store), math.ceil(256 * CHECK_S / CYCLE_S)
    started = time.perf_counter()
    outcome, _, _ = engine.verify(AGENCY, list(range(step)), probe, LATER)
    one = time.perf_counter() - started
    assert outcome.findings == []
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("UPDATE copy_rows SET status = 'disputed' WHERE listing_id = ?", (ROLLED,))
    passes, cursor, started = 0, bucket_of(ROLLED) + 1, time.perf_counter()  # the worst case: just missed
    while not outcome.repairs:
        outcome, _, _ = engine.verify(AGENCY, [(cursor + i) % 256 for i in range(step)], probe, LATER)
        cursor, passes = cursor + step, passes + 1
    work = time.perf_counter() - started
    print(f"  rolling verification: {step} buckets a pass, {one * 1000:.1f} ms a pass; a status edited by "
          f"hand found after {passes} passes ({passes * CHECK_S:.0f} s at one pass a second, worst case), "
          f"{work * 1000:.0f} ms of work in all")  # fmt: skip
    repair(engine, store, outcome.repairs[0], offset)


def misplaced_and_reindex(store: CopyStore, path: Path) -> None:
    """A row inserted by hand with a copied bucket: found by the misplaced scan, folded in by reindex."""
    cols = "version, status, subject_ref, measures, fields, effective_from, expires_at, exemptions"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute(f"INSERT INTO copy_rows (listing_id, {cols}, bucket, leaf) SELECT 'X-1', {cols}, bucket, "
                   f"leaf FROM copy_rows WHERE listing_id = ?", (EDITED,))  # fmt: skip
    started = time.perf_counter()
    found = store.misplaced()
    scanned = time.perf_counter() - started
    started = time.perf_counter()
    fixed = store.reindex()
    reindexed = time.perf_counter() - started
    assert list(found) == ["X-1"] and fixed.rows == ["X-1"]
    print(f"  misplaced-row scan {scanned * 1000:.0f} ms; reindex (caches and running digest from the rows) "
          f"{reindexed * 1000:.0f} ms, fixed {len(fixed.rows)} row in buckets {fixed.buckets}")  # fmt: skip


def _leaf_bytes(store: CopyStore) -> float:
    sample = StoreProbe(store).leaves(0, 256)
    return wire_size({k: list(v) for k, v in sample.items()}) / max(1, len(sample))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listings", type=int, nargs="+", default=[100_000])
    for n in parser.parse_args().listings:
        run(n)


if __name__ == "__main__":
    main()
