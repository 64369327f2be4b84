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

Bytes exchanged are what the probe's answers weigh as JSON (the digest, sub-bucket
hashes and leaves), against the copy's size on disk and what sending every leaf
would cost. The broker is not involved: its latency is the Luoshan demo's to show.

    python benchmarks/bench_reconcile.py [--listings 100000 1000000]
"""

from __future__ import annotations

import argparse
import contextlib
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
STALE, EDITED = "L-0000007", "L-0000042"


def states(book: Ledgerbook, n: int) -> Iterator[ListingState]:
    """N listings cloned from one sealed issue (sealing a million would dwarf the measurement)."""
    base = evolve(None, book.issue("L-0000000", measures=("flight_ban", "rail_ban")))  # type: ignore[arg-type]
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
    revoked = evolve(stale, book.revoke(STALE))  # type: ignore[arg-type]
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
    size, leaves = path.stat().st_size, round(n * _leaf_bytes(store))
    print(f"  copy: {size:,} bytes on disk, {leaves:,} bytes as leaves; one detection exchanged "
          f"{shallow.bytes:,} bytes = {100 * shallow.bytes / size:.4f}% of the copy")  # fmt: skip


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
