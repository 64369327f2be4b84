"""The whole data path: listing topics -> ledger worker -> views -> three copies, one on PostgreSQL.

Many listings live through issue, correction (adding and dropping measures), exemption,
objection, revocation and expiry; every copy must end equal to the view computed here,
independently by the reference model (`tests/support/reference.py`, which shares no code with
the ledger's fold and projection). Then the faults: the
ledger is killed with SIGKILL mid-stream and restarted, a copy is killed mid-batch and
restarted, and still every copy ends equal to its view with no change lost or applied
twice. One backbone serves the module; the second test builds on what the first published.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
import pytest

from services.copies.check import answer
from services.core.connection import KafkaConnection
from services.core.copystore import open_store
from services.core.events import Event, ListingState
from services.core.kafka import end_offsets
from services.core.views import ViewRow
from tests.integration.ledger.harness import Backbone, applied_once, copy_rows, wait_for, wait_for_copy
from tests.support import reference
from tests.support.backbones import running_backbone
from tests.support.factory import Ledgerbook

MEASURES = ("flight_ban", "rail_ban", "high_consumption")
EXPIRES_IN = timedelta(seconds=8)


@pytest.fixture(scope="module")
def pg_copy(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database for the module's railway copy."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield urlsplit(postgres_url)._replace(path=f"/{name}").geturl()
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def world(
    kafka_admin: KafkaConnection, pg_copy: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Backbone, dict[str, str], list[str]]]:
    """The backbone with its ledger and copies running; the copies' store URLs; listings that expire."""
    folder = tmp_path_factory.mktemp("scenario")
    stores = {
        "civil-aviation": f"sqlite:///{folder / 'civil-aviation.db'}",
        "railway": pg_copy,
        "court": f"sqlite:///{folder / 'court.db'}",
    }
    with running_backbone(kafka_admin, folder, ledger={}) as backbone:
        for agency, url in stores.items():
            backbone.start_copy(agency, url)
        yield backbone, stores, []


def life(book: Ledgerbook, listing_id: str, rng: random.Random, expiring: list[str]) -> list[Event]:
    """One listing's events: a random but lawful life, always in version order."""
    issuer = rng.choice(["court", "court", "tax-bureau"])
    measures = rng.sample(MEASURES, rng.randint(1, 3))
    if rng.random() < 0.1:
        expiring.append(listing_id)
        return [book.issue(listing_id, issuer, tuple(measures), expires_at=datetime.now(UTC) + EXPIRES_IN)]
    events: list[Event] = [book.issue(listing_id, issuer, tuple(measures), subject_ref=f"s-{listing_id}")]
    for _ in range(rng.randint(0, 3)):
        step = rng.choice(["correct", "exempt", "object"])
        if step == "correct":
            measures = rng.sample(MEASURES, rng.randint(1, 3))
            events.append(
                book.correct(listing_id, issuer, measures=measures, legal_basis=f"basis {rng.random()}")
            )
        elif step == "exempt":
            events.append(book.exempt(listing_id, rng.choice(measures), agency=issuer))
        else:
            events.append(book.object(listing_id, f"obj-{len(events)}", agency=issuer))
            if rng.random() < 0.5:
                events.append(book.resolve(listing_id, f"obj-{len(events) - 1}", agency=issuer))
    if rng.random() < 0.25:
        events.append(book.revoke(listing_id, rng.choice([issuer, "court"])))  # a court may revoke too
    return events


def lives(book: Ledgerbook, prefix: str, count: int, seed: int, expiring: list[str]) -> list[list[Event]]:
    rng = random.Random(seed)
    made = [life(book, f"{prefix}-{i:03d}", rng, expiring) for i in range(count)]
    made.append(
        [
            book.issue(f"{prefix}-drop", measures=("flight_ban", "rail_ban"), subject_ref=f"s-{prefix}-drop"),
            book.correct(f"{prefix}-drop", measures=["rail_ban"]),  # civil aviation must lose it
        ]
    )
    return made


def interleaved(chains: list[list[Event]]) -> list[Event]:
    """Round-robin across listings: each listing in order, listings mixed as in real traffic."""
    out: list[Event] = []
    for step in range(max(len(c) for c in chains)):
        out += [c[step] for c in chains if step < len(c)]
    return out


def converge(backbone: Backbone, stores: dict[str, str], expiring: list[str]) -> dict[str, reference.Truth]:
    truths = reference.truths(backbone.events, expiring)
    for agency, url in stores.items():
        wait_for_copy(backbone, agency, url, reference.views(truths, agency, backbone.policy), timeout=120)
    return truths


def assert_entitled_only(backbone: Backbone, stores: dict[str, str]) -> None:
    """Scan every row of every copy: no field or measure its agency is not entitled to."""
    for agency, url in stores.items():
        allowed = set(backbone.policy.agency_by_id[agency].fields)
        for row in copy_rows(url, agency).values():
            assert set(row.fields) <= allowed, (agency, row.listing_id, set(row.fields) - allowed)
            assert row.measures == backbone.policy.enforced_by(agency, row.measures)
            assert {e.measure for e in row.exemptions} <= set(row.measures)
        assert reference.unmasked(copy_rows(url, agency).values()) == []


def assert_ledger_applied_each_event_once(backbone: Backbone, truths: dict[str, reference.Truth]) -> None:
    latest = {e.envelope.listing_id: e for e in backbone.read(backbone.topics.ledger)}
    for listing_id, want in truths.items():
        have = latest[listing_id]
        assert isinstance(have, ListingState)
        assert len(have.event_ids) == len(set(have.event_ids)) == have.envelope.version
        assert (have.status, have.envelope.version) == (want.status, want.version)
        if want.status != "expired":  # the expiry's event id is the ledger's own
            assert reference.disagreements(want, have) == [], listing_id


def test_every_copy_ends_equal_to_its_view(world: tuple[Backbone, dict[str, str], list[str]]) -> None:
    backbone, stores, expiring = world
    chains = lives(backbone.book(), "S", 60, seed=4, expiring=expiring)
    backbone.publish(interleaved(chains))
    kinds = {type(e).__name__ for chain in chains for e in chain}
    assert kinds >= {
        "ListingIssued",
        "ListingCorrected",
        "ListingRevoked",
        "ExemptionGranted",
        "ObjectionFiled",
    }
    assert expiring, "the scenario must include listings that expire"
    time.sleep(max(0.0, EXPIRES_IN.total_seconds() - 4))
    states = converge(backbone, stores, expiring)

    assert_entitled_only(backbone, stores)
    assert_ledger_applied_each_event_once(backbone, states)
    for agency in stores:
        applied_once(backbone, agency)
    assert "S-drop" not in copy_rows(stores["civil-aviation"], "civil-aviation")
    assert copy_rows(stores["railway"], "railway")["S-drop"].measures == ["rail_ban"]
    assert all(states[x].status == "expired" for x in expiring)
    exempted = _exempted_now(copy_rows(stores["civil-aviation"], "civil-aviation"))
    if exempted is not None:
        store = open_store(stores["civil-aviation"], "civil-aviation")
        try:
            said = answer(store, exempted.subject_ref, {0: 0}, datetime.now(UTC), 300)
        finally:
            store.close()
        assert any(m.exemption is not None and not m.in_force for x in said.listings for m in x.measures)


def _exempted_now(rows: dict[str, ViewRow]) -> ViewRow | None:
    now = datetime.now(UTC)
    return next((r for r in rows.values() if any(e.starts_at <= now < e.ends_at for e in r.exemptions)), None)


class Pacer(threading.Thread):
    """Publishes events at a steady pace in the background, as agencies would."""

    def __init__(self, backbone: Backbone, events: list[Event], per_second: float) -> None:
        super().__init__(daemon=True)
        self.backbone, self.events, self.gap = backbone, events, 1.0 / per_second
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, len(self.events), 10):
                self.backbone.publish(self.events[start : start + 10])
                time.sleep(self.gap * 10)
        except BaseException as e:
            self.failure = e


def test_killed_ledger_and_copy_recover_with_nothing_lost_or_applied_twice(
    world: tuple[Backbone, dict[str, str], list[str]],
) -> None:
    backbone, stores, expiring = world
    events = interleaved(lives(backbone.book(), "F", 60, seed=11, expiring=expiring))
    pacer = Pacer(backbone, events, per_second=40)
    ledger_before = backbone.count(backbone.topics.ledger)
    pacer.start()

    wait_for(
        "the ledger to work on the new stream",
        lambda: backbone.count(backbone.topics.ledger) > ledger_before + 20,
        60,
    )
    backbone.kill("ledger")
    assert pacer.is_alive(), "the ledger must be killed mid-stream"
    time.sleep(1)
    backbone.start_ledger()

    railway, views = stores["railway"], backbone.topics.views("railway")
    store = open_store(railway, "railway")
    try:
        before = sum(store.positions().values())
        wait_for(
            "the railway copy to apply the new stream",
            lambda: sum(store.positions().values()) > before + 20,
            90,
        )
        backbone.kill("copy-railway")
        at_kill = sum(store.positions().values())
    finally:
        store.close()
    backbone.start_copy("railway", railway)

    pacer.join(timeout=120)
    assert pacer.failure is None and not pacer.is_alive()
    states = converge(backbone, stores, expiring)
    assert at_kill < sum(end_offsets(backbone.connection, [views]).values()), "the copy was killed mid-stream"
    assert_entitled_only(backbone, stores)
    assert_ledger_applied_each_event_once(backbone, states)
    for agency in stores:
        applied_once(backbone, agency)
