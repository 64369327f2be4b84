"""`accord ledger status`: health is progress, so an unhealthy, missing or old report fails the check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from services.core.health import Progress
from services.ledger.cli import ledger
from services.ledger.worker import write_report


def status(folder: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(ledger, ["status", "--data-dir", str(folder), *args])
    return result.exit_code, result.output


def test_a_fresh_healthy_report_passes_and_an_old_or_missing_one_fails(tmp_path: Path) -> None:
    assert status(tmp_path)[0] == 1

    progress = Progress("ledger", stall_after_s=5)
    progress.advance(handled=5, applied=4)
    progress.note(held={"L-1": 1})
    write_report(progress.judge({("listings.court", 0): 0}), tmp_path / "health.json")
    code, output = status(tmp_path, "--json")
    assert code == 0, output
    assert json.loads(output)["held"] == {"L-1": 1}
    assert json.loads(output)["handled"] == 5
    code, output = status(tmp_path)
    assert code == 0 and "handled: 5" in output.splitlines()

    report = json.loads((tmp_path / "health.json").read_text())
    report["written_at"] = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    (tmp_path / "health.json").write_text(json.dumps(report))
    code, output = status(tmp_path, "--stale-after", "60")
    assert code == 1 and "stopped or stuck" in output


def test_a_report_the_timer_keeps_writing_fails_when_the_agent_stalls(tmp_path: Path) -> None:
    """The timer writing a fresh report proves nothing: input waiting and nothing handled fails."""
    clock = [0.0]
    progress = Progress("ledger", stall_after_s=5, clock=lambda: clock[0])
    progress.advance(handled=1)
    lag = {("listings.court", 0): 3}
    progress.judge(lag)  # the timer's judgement that first saw the input waiting
    clock[0] = 60.0
    write_report(progress.judge(lag), tmp_path / "health.json")
    code, output = status(tmp_path)
    assert code == 1
    assert "3 pending and nothing handled for 60 s" in output
