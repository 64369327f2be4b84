"""The front-line check and what the sink publishes or refuses, without a broker.

Freshness must flag a copy that is behind and idle past its SLA, or whose lag is
unknown, and send the officer to the issuing agency; measures must be judged at check
time (effect, expiry, exemption windows); nothing outside an agency's entitlement may
pass the sink.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.copies import messages
from services.copies.check import answer, freshness, measure_answer
from services.copies.cli import EXIT_STALE, copy
from services.core.copystore import CopyStore, open_store
from services.core.crypto import pseudonymise
from services.core.digest import Digest
from services.core.policy import load_policy
from tests.unit.copies.changes import AGENCY, T0, delete, row, upsert

POLICY = load_policy()
NOW = T0 + timedelta(days=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CopyStore]:
    opened = open_store(f"sqlite:///{tmp_path}/copy.db", AGENCY)
    yield opened
    opened.close()


def test_a_copy_that_is_caught_up_is_fresh_however_long_it_has_been_idle() -> None:
    fresh = freshness({0: 5}, {0: 0, 1: 0}, NOW - timedelta(days=30), NOW, sla_s=300)
    assert not fresh.stale


def test_a_copy_behind_but_applying_within_its_sla_is_fresh() -> None:
    assert not freshness({0: 5}, {0: 3}, NOW - timedelta(seconds=60), NOW, sla_s=300).stale


@pytest.mark.parametrize(
    ("lag", "last", "says"),
    [
        ({0: 3}, NOW - timedelta(seconds=301), "applied nothing for 301 s"),
        ({0: 3}, None, "never applied"),
        (None, NOW, "lag is unknown"),
    ],
)
def test_a_stale_copy_says_so(lag: dict[int, int] | None, last: object, says: str) -> None:
    fresh = freshness({0: 5}, lag, last, NOW, sla_s=300)  # type: ignore[arg-type]
    assert fresh.stale and says in fresh.note


def test_measures_are_judged_at_check_time() -> None:
    exempt = row("L-1", exempt=True)  # flight_ban exempt from T0 for 3 days
    assert measure_answer(exempt, "flight_ban", NOW).in_force is False
    assert measure_answer(exempt, "flight_ban", NOW).exemption is not None
    assert measure_answer(exempt, "flight_ban", T0 + timedelta(days=3)).in_force is True
    assert "takes effect" in measure_answer(row("L-1"), "flight_ban", T0 - timedelta(hours=1)).why
    assert "expired" in measure_answer(row("L-1"), "flight_ban", T0 + timedelta(days=365)).why
    disputed = measure_answer(row("L-1", status="disputed"), "flight_ban", NOW)
    assert disputed.in_force and "disputed" in disputed.why


def test_an_answer_names_the_listing_measure_basis_and_freshness(store: CopyStore) -> None:
    store.apply(upsert(row("L-1", subject_ref="s-yu")), 0, 0)
    store.apply(upsert(row("L-2", subject_ref="s-other")), 0, 1)
    result = answer(store, "s-yu", {0: 0}, NOW, sla_s=300)
    assert result.restricted
    assert [x.listing_id for x in result.listings] == ["L-1"]
    assert result.listings[0].issuer == "court" and result.listings[0].case_ref == "case-1"
    assert result.freshness.positions == {0: 2} and not result.freshness.stale
    assert result.advice.startswith("RESTRICTED")


def test_a_stale_answer_sends_the_officer_to_the_issuer(store: CopyStore) -> None:
    store.apply(upsert(row("L-1", subject_ref="s-yu")), 0, 0)
    result = answer(store, "s-yu", None, NOW, sla_s=300)
    assert result.advice.startswith("CONFIRM BEFORE ACTING") and "court" in result.advice


def offline_subject(store: CopyStore, monkeypatch: pytest.MonkeyPatch) -> str:
    """`copy check` set up with a pseudonym key and no reachable broker; L-1 listed against the
    subject 420102199001011234, whose pseudonym is returned."""
    key = "test-pseudonym-key"
    subject = pseudonymise("420102199001011234", key.encode())
    store.apply(upsert(row("L-1", subject_ref=subject)), 0, 0)
    monkeypatch.setenv("ACCORD_PSEUDONYM_KEY", key)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("ACCORD_COPY_LAG_TIMEOUT_S", "0.5")
    return subject


def test_the_cli_check_pseudonymises_and_exits_2_when_the_broker_is_unreachable(
    store: CopyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject = offline_subject(store, monkeypatch)
    url = f"sqlite:///{tmp_path}/copy.db"
    args = ["--agency", AGENCY, "--store", url]
    result = CliRunner().invoke(
        copy, ["check", *args, "--json", "--subject-file", "-"], input="420102-19900101-1234\n"
    )
    assert result.exit_code == EXIT_STALE, result.output
    body = json.loads(result.output)
    assert body["subject_ref"] == subject and body["listings"][0]["listing_id"] == "L-1"
    assert body["freshness"]["stale"] and body["freshness"]["lag"] is None
    (tmp_path / "subject.txt").write_text("420102199001011234\n")
    text = CliRunner().invoke(copy, ["check", *args, "--subject-file", str(tmp_path / "subject.txt")])
    assert "CONFIRM BEFORE ACTING" in text.output and "flight_ban: in force" in text.output
    asked = CliRunner().invoke(copy, ["check", *args, "--json"], input="420102199001011234\n")
    assert json.loads(asked.output)["subject_ref"] == subject  # no file: the next line of stdin (or a prompt)
    flagged = CliRunner().invoke(copy, ["check", *args, "--subject", "420102199001011234"])
    assert flagged.exit_code == 2 and "never taken from the command line" in flagged.output
    assert "420102199001011234" not in flagged.output


def test_the_sink_refuses_fields_and_measures_outside_the_entitlement() -> None:
    entitled = messages.Entitlement.of(POLICY, AGENCY)

    def code(change: object) -> str | None:
        found = messages.fault(change, entitled)  # type: ignore[arg-type]
        return found[0] if found else None

    leaky = upsert(row("L-1")).model_copy(update={"fields": {"case_ref": "c", "details.amount_owed": "1"}})
    assert messages.fault(leaky, entitled) == (
        "not_entitled",
        f"{AGENCY} is not entitled to fields ['details.amount_owed'] or measures []",
    )
    assert code(upsert(row("L-1")).model_copy(update={"measures": ["procurement_ban"]})) == "not_entitled"
    assert code(upsert(row("L-1"), agency="railway")) == "wrong_agency"
    assert code(upsert(row("L-1")).model_copy(update={"status": "revoked"})) == "not_a_view_row"
    assert code(upsert(row("L-1"))) is None
    assert code(upsert(row("L-1", status="disputed"))) is None
    assert code(delete("L-1", 2)) is None


def test_acknowledgements_and_refusals_keep_their_id_across_resends() -> None:
    change = upsert(row("L-1", 4))
    first = messages.applied(change, 1, 9, AGENCY, NOW)
    again = messages.applied(change, 1, 9, AGENCY, NOW + timedelta(seconds=5))
    assert first.envelope.event_id == again.envelope.event_id
    assert (first.envelope.listing_id, first.envelope.version, first.row_hash) == (
        "L-1",
        4,
        row("L-1", 4).row_hash(),
    )
    assert messages.applied(delete("L-1", 5), 1, 10, AGENCY, NOW).row_hash == ""
    digest = messages.digest_of(AGENCY, Digest(), {1: 10, 0: 3}, NOW)
    assert digest.positions == {"0": 3, "1": 10} and digest.root == Digest().root()


@pytest.mark.parametrize("command", ["run", "check", "serve"])
def test_an_agency_that_enforces_nothing_has_no_copy_to_run_or_ask(command: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/copy.db"
    result = CliRunner().invoke(copy, [command, "--agency", "tax-bureau", "--store", store])
    assert result.exit_code == 2
    assert "'tax-bureau' enforces no measure" in result.output and "civil-aviation" in result.output
    assert not (tmp_path / "copy.db").exists()
