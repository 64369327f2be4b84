"""The front-line check always answers, on SQLite and PostgreSQL copies alike: a row it cannot read
makes it say the copy is damaged, send the officer to the issuing agency, and record the damage
for the reconciler (which reports it as a finding)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from services.copies.check import answer
from services.copies.cli import EXIT_STALE, copy
from services.core.copystore import CopyStore
from services.core.copystore.probe import StoreProbe
from tests.unit.copies.changes import AGENCY, T0, by_reconciler, row, upsert
from tests.unit.copies.test_copy_check import offline_subject
from tests.unit.copies.test_copystore_behaviour import execute

NOW = T0 + timedelta(days=1)


@pytest.mark.parametrize(
    "edit",
    [
        "status = 'revoked'",  # a status no view row may have
        "measures = 'not json'",
        "effective_from = 'yesterday'",
        "exemptions = '[{\"measure\": 1}]'",
    ],
)
def test_a_row_that_no_longer_reads_is_answered_as_damaged_and_recorded(
    store: CopyStore, url: str, edit: str
) -> None:
    store.apply(upsert(row("L-1", subject_ref="s-yu")), 0, 0)
    store.apply(upsert(row("L-2", subject_ref="s-yu", case_ref="other")), 0, 1)
    execute(url, f"UPDATE copy_rows SET {edit} WHERE listing_id = 'L-1'")
    result = answer(store, "s-yu", {0: 0}, NOW, sla_s=300)
    assert not result.trustworthy and [d.listing_id for d in result.damaged] == ["L-1"]
    assert result.advice.startswith("COPY DAMAGED, CONFIRM WITH THE ISSUING AGENCY")
    assert "L-1" in result.advice
    assert [x.listing_id for x in result.listings] == ["L-2"]  # what can be read is still shown
    assert list(StoreProbe(store).damaged()) == ["L-1"]  # the reconciler will find it
    store.apply(by_reconciler(upsert(row("L-1", subject_ref="s-yu"))), 0, 2)  # the repair
    assert answer(store, "s-yu", {0: 0}, NOW, sla_s=300).trustworthy
    assert StoreProbe(store).damaged() == {}


def test_a_copy_that_cannot_be_read_at_all_still_answers(store: CopyStore, url: str) -> None:
    store.apply(upsert(row("L-1", subject_ref="s-yu")), 0, 0)
    execute(url, "DROP TABLE copy_rows")
    result = answer(store, "s-yu", {0: 0}, NOW, sla_s=300)
    assert not result.trustworthy and result.freshness.stale
    assert result.advice.startswith("COPY DAMAGED") and "the copy itself" in result.advice


def test_the_cli_answers_a_damaged_row_and_exits_2(
    store: CopyStore, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    offline_subject(store, monkeypatch)
    execute(url, "UPDATE copy_rows SET status = 'revoked' WHERE listing_id = 'L-1'")
    args = ["check", "--agency", AGENCY, "--store", url, "--subject-file", "-"]
    national_id = "420102199001011234\n"  # on standard input: never a flag
    text = CliRunner().invoke(copy, args, input=national_id)
    assert text.exit_code == EXIT_STALE, text.output
    assert "COPY DAMAGED, CONFIRM WITH THE ISSUING AGENCY" in text.output and "L-1: DAMAGED" in text.output
    body = json.loads(CliRunner().invoke(copy, [*args, "--json"], input=national_id).output)
    assert body["damaged"][0]["listing_id"] == "L-1" and not body["restricted"]
