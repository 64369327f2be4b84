"""How many listings the expected views hold is kept with them, not counted: at ten million a
`count(*)` over `known` reads every stored state (~5 GB), and the progress line asks every minute."""

from __future__ import annotations

from pathlib import Path

from services.core.events import ListingState
from services.core.listing import evolve
from services.core.policy import load_policy
from services.core.snapshot import Snapshot
from services.reconciler.expected import LISTINGS, ExpectedViews
from services.reconciler.kept import SCHEMA, TABLES
from tests.support.factory import T0, Ledgerbook, policy_with_keys

CA = "civil-aviation"


def _opened(folder: Path) -> tuple[ExpectedViews, list[str]]:
    """The views kept in `folder`, and every statement they run from then on."""
    expected = ExpectedViews(
        load_policy(), [CA], snapshot=Snapshot(folder / "expected.sqlite3", SCHEMA, TABLES)
    )
    statements: list[str] = []
    expected.snapshot.db.set_trace_callback(statements.append)
    return expected, statements


def _states(folder: Path, listings: int) -> list[ListingState]:
    """`listings` issued listings, then a correction of the first (a new version, not a new listing)."""
    _, keystore = policy_with_keys(folder / f"keys-{listings}")
    book, states = Ledgerbook(keystore), []
    for i in range(listings):
        states.append(evolve(None, book.issue(f"L-{i}")))
    states.append(evolve(states[0], book.correct("L-0", severity="severe")))
    return states


def test_listings_are_counted_as_they_come_and_a_restart_reads_the_count_not_the_rows(tmp_path: Path) -> None:
    states = _states(tmp_path, 5)
    expected, _ = _opened(tmp_path)
    for state in states + states[1:3]:  # a re-read changes nothing
        expected.update(state, T0)
    assert len(expected) == 5
    expected.commit({})
    expected.update(_states(tmp_path, 6)[5], T0)  # never committed: rolled back
    expected.close()
    again, statements = _opened(tmp_path)
    try:
        assert len(again) == 5 and again.snapshot.meta(LISTINGS) == "5"
        assert not [s for s in statements if "count(" in s.lower()]
    finally:
        again.close()


def test_a_snapshot_kept_before_the_count_is_counted_once_and_an_emptied_one_holds_none(
    tmp_path: Path,
) -> None:
    expected, _ = _opened(tmp_path)
    for state in _states(tmp_path, 3):
        expected.update(state, T0)
    expected.commit({})
    expected.snapshot.db.execute("DELETE FROM meta WHERE name = ?", (LISTINGS,))
    expected.snapshot.commit({})
    expected.close()
    older, _ = _opened(tmp_path)
    try:
        assert len(older) == 3
        older.snapshot.forget("another-cluster")
        older.reload()
        assert len(older) == 0
    finally:
        older.close()
