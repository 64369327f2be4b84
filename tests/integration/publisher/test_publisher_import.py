"""`accord publish import FILE` on the real broker, with the ledger ruling: every line checked like one
command, refused lines by number with the single path's reasons, nothing repeated by a re-run, not even
after the import process is killed with SIGKILL in the middle of the stream."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from services.cli import main
from services.core.commands import event_id_of, listing_id_of
from services.core.kafka import decode_message, read_all
from services.publisher.importfile import Commands, import_id_of, read_lines
from tests.integration.publisher.conftest import Backbone
from tests.unit.publisher.samples import issue_line

ACCORD = str(Path(sys.executable).parent / "accord")
IDS = ("4201021990", "Subject Number")  # every national id below starts so, every name so


def issue_fields(n: int, **changes: Any) -> dict[str, Any]:
    return issue_line(n, datetime.now(UTC), **changes)


def correction(issued_by: str, version: int) -> dict[str, Any]:
    return {"command": "correct", "listing_request_id": issued_by, "expected_version": version,
            "changes": {"measures": ["flight_ban"]}, "reason": "rail ban listed by mistake"}  # fmt: skip


def revocation(issued_by: str, version: int) -> dict[str, Any]:
    return {"command": "revoke", "listing_request_id": issued_by, "expected_version": version,
            "reason": "mislisting"}  # fmt: skip


def import_(env: dict[str, str], path: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    result = CliRunner(env=env).invoke(main, ["publish", "import", str(path), *args])
    return result, json.loads(result.stdout)


def mixed_lines(run: str) -> list[str]:
    """Good lines, lines refused by a rule, malformed lines: (line number) what it is."""
    return [
        json.dumps(issue_fields(1, request_id=f"{run}-a")),  # (1) issued
        json.dumps(correction(f"{run}-a", 1)),  # (2) corrects (1), published before the ledger ruled on it
        json.dumps(issue_fields(2, birth_date="2015-01-01")),  # (3) minor_subject
        '{"command": "issue", "national_id": "420102199005171234",',  # (4) not JSON
        "",  # (5) blank: skipped
        json.dumps({"command": "ban", "listing_id": "x"}),  # (6) no such command
        json.dumps(correction(f"{run}-a", 1)),  # (7) stale_version: (2) made it version 2
        json.dumps({**correction(f"{run}-a", 2), "agency": "police"}),  # (8) not_your_agency
        json.dumps(issue_fields(3)),  # (9) issued (its request id derived from the line)
        json.dumps({**correction(f"{run}-a", 2), "changes": {"colour": "red"}}),  # (10) invalid_command
        json.dumps(revocation(f"{run}-a", 2)),  # (11) revokes (1)
        "[1, 2]",  # (12) not an object
        json.dumps({**correction(f"{run}-a", 3), "request_id": f"{run}-a"}),  # (13) (1)'s request id
    ]


EXPECTED_REFUSALS = {3: "minor_subject", 4: "invalid_command", 6: "invalid_command", 7: "stale_version",
                     8: "not_your_agency", 10: "invalid_command", 12: "invalid_command",
                     13: "request_id_reused"}  # fmt: skip


def test_a_mixed_file_publishes_the_good_lines_and_names_each_refused_one(
    backbone: Backbone, publisher_env: dict[str, str], tmp_path: Path
) -> None:
    run = tmp_path.name
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(mixed_lines(run)) + "\n")
    env = {**publisher_env, "ACCORD_STATE_DIR": str(tmp_path / "state")}
    result, report = import_(env, path)
    assert result.exit_code == 3, result.output
    assert {r["line"]: r["code"] for r in report["refusals"]} == EXPECTED_REFUSALS
    assert (report["lines"], report["published"], report["admitted"], report["undecided"]) == (12, 4, 4, 0)
    assert "not JSON" in next(r["reason"] for r in report["refusals"] if r["line"] == 4)
    assert "line 3: minor_subject" in result.stderr
    assert not any(secret in result.output for secret in IDS)  # line numbers and listing ids only
    listing = listing_id_of("court", f"{run}-a")
    state = backbone.publisher().current(listing)
    assert state is not None and state.status == "revoked" and len(state.event_ids) == 3
    again, second = import_(env, path)  # the same file again: recognised, nothing sent
    assert again.exit_code == 3 and second["published"] == 0 and second["already_published"] == 4
    now_ended = {**EXPECTED_REFUSALS, 7: "listing_ended"}  # decided again, against the listing as it is now
    assert {r["line"]: r["code"] for r in second["refusals"]} == now_ended
    assert sorted(e.event.envelope.version for e in backbone.published(listing)) == [1, 2, 3]


def test_a_refused_line_fixed_and_run_again_under_the_same_import_id_publishes_only_it(
    backbone: Backbone, publisher_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "fix.jsonl"
    lines = [issue_fields(1), issue_fields(2, birth_date="2015-01-01"), issue_fields(3)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    env, again = (
        {**publisher_env, "ACCORD_STATE_DIR": str(tmp_path / "state")},
        ("--import-id", tmp_path.name),
    )
    first, report = import_(env, path, *again)
    assert first.exit_code == 3 and [r["line"] for r in report["refusals"]] == [2]
    lines[1]["birth_date"] = "1990-05-17"  # the clerk fixes the refused line, nothing else
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    fixed, second = import_(env, path, *again)
    assert fixed.exit_code == 0, fixed.output
    assert (second["published"], second["admitted"], second["already_published"]) == (1, 1, 2)


def test_a_csv_file_is_checked_row_by_row(
    backbone: Backbone, publisher_env: dict[str, str], tmp_path: Path
) -> None:
    header = ["command", "request_id", "national_id", "full_name", "birth_date", "category", "measures",
              "legal_basis", "severity", "case_ref", "notice_served_at", "effective_from",
              "details.amount_owed"]  # fmt: skip

    def row(n: int, **changes: Any) -> list[str]:
        fields = {**issue_fields(n, request_id=f"{tmp_path.name}-{n}"), **changes}
        fields["measures"] = ";".join(fields["measures"])
        return [str(fields.get(column, "")) for column in header[:-1]] + ["182000"]

    path = tmp_path / "listings.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerows([header, row(1), row(2, birth_date="2015-01-01"), row(3)[:4], row(4)])
    env = {**publisher_env, "ACCORD_STATE_DIR": str(tmp_path / "state")}
    result, report = import_(env, path)
    assert result.exit_code == 3, result.output
    assert {r["line"]: r["code"] for r in report["refusals"]} == {3: "minor_subject", 4: "invalid_command"}
    assert "4 cells" in report["refusals"][1]["reason"] and report["admitted"] == 2
    issued = backbone.published(*(listing_id_of("court", f"{tmp_path.name}-{n}") for n in (1, 4)))
    assert [e.event.details for e in issued] == [{"amount_owed": "182000"}] * 2  # type: ignore[attr-defined]
    assert not any(secret in result.output for secret in IDS)


def test_an_identifier_on_the_command_line_is_refused(publisher_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(issue_fields(1)) + "\n")
    result = CliRunner(env=publisher_env).invoke(
        main, ["publish", "import", str(path), "--national-id", "420102199005171234"]
    )
    assert result.exit_code == 2 and "never taken from the command line" in result.output
    assert "420102199005171234" not in result.output


KILL_AFTER = 100  # events seen on the broker before the SIGKILL: the import has begun, far from its end
RERUN_WAIT_S = 15  # the re-run's --wait: the silence after which it sends again what never reached the log


@pytest.mark.parametrize("workers", [1, 2])
def test_an_import_killed_mid_stream_and_run_again_publishes_every_line_exactly_once(
    backbone: Backbone, publisher_env: dict[str, str], tmp_path: Path, workers: int
) -> None:
    """Killed with SIGKILL while it streams (its workers die with it), then run again in one process.

    The kill comes once the test has seen KILL_AFTER of its events on the broker (asked every
    10 ms on one client), so it lands mid-stream whatever the machine's load; the journal (bulk.JOURNAL_STEP
    lines ahead of what is sent) then names lines the killed run never sent, which the re-run waits
    RERUN_WAIT_S of silence for before it sends them: what a re-run after a crash always does."""
    count = 900  # issues, every third corrected by the next line: 1,200 lines, the kill after ~100
    lines: list[dict[str, Any]] = []
    for n in range(count):
        lines.append(issue_fields(n, request_id=f"{tmp_path.name}-{n}") if n % 3 == 0 else issue_fields(n))
        if n % 3 == 0:
            lines.append(correction(f"{tmp_path.name}-{n}", 1))
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    env = {**os.environ, **publisher_env, "ACCORD_STATE_DIR": str(tmp_path / "state")}
    topic = backbone.topics.listings("court")
    before = backbone.records_in([topic])

    def sent() -> int:
        return backbone.records_in([topic]) - before

    command = [ACCORD, "publish", "import", str(path), "--workers", str(workers)]
    crashed = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    while sent() < KILL_AFTER and crashed.poll() is None:
        time.sleep(0.01)
    os.kill(crashed.pid, signal.SIGKILL)
    crashed.wait()
    assert crashed.returncode == -signal.SIGKILL
    time.sleep(1)  # what the kernel had taken from the killed process's sockets reaches the broker
    sent_then = sent()
    time.sleep(2)  # and nothing of the killed import is left sending (its workers died with it)
    assert sent() == sent_then
    assert 0 < sent_then < len(lines), "the kill must land in the middle of the stream"
    print(f"killed after {sent_then} of {len(lines)} lines reached the broker")
    again = subprocess.run([ACCORD, "publish", "import", str(path), "--wait", str(RERUN_WAIT_S)], env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    report = json.loads(again.stdout)
    assert again.returncode == 0, again.stdout[-3000:]
    assert report["admitted"] + report["already_published"] == len(lines) and report["refused"] == 0
    assert report["already_published"] > 0  # the killed run's lines were recognised, not sent again
    expected = expected_events(path, "process-test-key")
    published = [decode_message(m).event.envelope for m in read_all(backbone.connection, [topic])
                 if m.key() in {listing.encode() for listing in expected.values()}]  # fmt: skip
    assert sorted(e.event_id for e in published) == sorted(expected)  # each line once, none missing
    reader, applied = backbone.publisher(), []
    reader.catch_up()  # to the ledger's end, once: every verdict of the re-run is in
    for listing in set(expected.values()):
        state = reader.book.state(listing)
        assert state is not None
        applied.extend(state.event_ids)
    assert sorted(applied) == sorted(expected)  # the ledger applied every line, each once


def expected_events(path: Path, key: str) -> dict[str, str]:
    """Event id -> listing id of every line of `path`, as the importer derives them."""
    commands = Commands(key.encode(), import_id_of(path), "court")
    made = [commands.command(line) for line in read_lines(path, "jsonl")]
    assert all(c.event_id == event_id_of("court", c.request_id) for c in made)
    return {c.event_id: c.listing_id for c in made}
