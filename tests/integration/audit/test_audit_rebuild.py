"""`accord audit rebuild` on a real broker: a lost copy rebuilt from the log, in SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.core.copystore import open_store
from services.core.digest import Digest, leaf
from services.core.kafka import end_offsets
from services.core.views import project
from tests.integration.audit.world import World

T0 = datetime(2026, 4, 1, tzinfo=UTC)


def busy_history(world: World) -> list[str]:
    """Issues, a correction that drops civil aviation's measure, an exemption, a revocation."""
    book = world.book
    book.now = T0
    ids = [f"L-{n}" for n in range(8)]
    for n, listing in enumerate(ids):
        measures = ("flight_ban", "rail_ban") if n % 2 else ("flight_ban", "high_consumption")
        world.publish_and_emit(
            book.issue(listing, agency="court" if n % 3 else "luoshan-police", measures=measures)
        )
    book.now = T0 + timedelta(days=1)
    world.publish_and_emit(book.correct("L-1", agency="court", measures=["rail_ban"]))
    world.publish_and_emit(book.exempt("L-2", "flight_ban", agency="court"))
    world.publish_and_emit(book.revoke("L-3", agency="court"))
    world.publish_and_emit(book.object("L-4", agency="court"))
    return ids


def independent_digest(world: World, agency: str) -> Digest:
    """The expected digest, from the events the test itself wrote: core's fold and projection only."""
    rows = [project(state, agency, world.policy) for state in world.states.values()]
    return Digest.of((r.listing_id, leaf(r.listing_id, r.version, r.status, r.row_hash())) for r in rows if r)


def test_a_rebuilt_sqlite_copy_has_the_expected_digest_and_positions(world: World, tmp_path: Path) -> None:
    busy_history(world)
    url = f"sqlite:///{tmp_path / 'civil-aviation.db'}"
    result = world.run("rebuild", "--agency", "civil-aviation", "--store", url)
    assert result.exit_code == 0, result.output
    store = open_store(url, "civil-aviation")
    try:
        expected = independent_digest(world, "civil-aviation")
        assert store.digest().root() == expected.root() and expected.rows == 6
        assert {row.listing_id for row in store.rows()} == {"L-0", "L-2", "L-4", "L-5", "L-6", "L-7"}
        highs = end_offsets(world.connection, [world.topics.views("civil-aviation")])
        assert store.positions() == {tp.partition: high for tp, high in highs.items() if high > 0}
    finally:
        store.close()
    assert "the copy equals the view the listing log implies" in result.stdout


def test_a_rebuilt_postgresql_copy_equals_the_expected_view(world: World, pg_database: str) -> None:
    busy_history(world)
    result = world.run_json("rebuild", "--agency", "railway", "--store", pg_database)
    assert result["differences"] == []
    store = open_store(pg_database, "railway")
    try:
        assert store.digest().root() == independent_digest(world, "railway").root()
    finally:
        store.close()


def test_a_views_topic_behind_the_log_is_reported_and_fails(world: World, tmp_path: Path) -> None:
    busy_history(world)
    book = world.book
    world.publish(book.revoke("L-0", agency="luoshan-police"))  # the ledger has not emitted it yet
    result = world.run(
        "rebuild", "--agency", "civil-aviation", "--store", f"sqlite:///{tmp_path / 'c.db'}", "--json"
    )
    assert result.exit_code == 1
    assert '"listing": "L-0"' in result.stdout and '"expected": "absent"' in result.stdout


def test_rebuild_refuses_a_store_that_already_holds_a_copy(world: World, tmp_path: Path) -> None:
    busy_history(world)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert world.run("rebuild", "--agency", "railway", "--store", url).exit_code == 0
    again = world.run("rebuild", "--agency", "railway", "--store", url)
    assert again.exit_code == 1 and "already holds a copy" in again.output
