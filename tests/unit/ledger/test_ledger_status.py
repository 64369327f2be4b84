"""`accord ledger status`: health is progress, so a missing or old report fails the check."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from services.ledger.app import Progress
from services.ledger.cli import ledger


def test_a_fresh_report_passes_and_an_old_or_missing_one_fails(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(ledger, ["status", "--data-dir", str(tmp_path)]).exit_code == 1

    Progress(handled=5, applied=4, last_at=datetime.now(UTC), held={"L-1": 1}).write(tmp_path / "health.json")
    fresh = runner.invoke(ledger, ["status", "--data-dir", str(tmp_path), "--json"])
    assert fresh.exit_code == 0, fresh.output
    assert json.loads(fresh.output)["held"] == {"L-1": 1}
    text = runner.invoke(ledger, ["status", "--data-dir", str(tmp_path)])
    assert text.exit_code == 0 and "handled: 5" in text.output.splitlines()

    report = json.loads((tmp_path / "health.json").read_text())
    report["written_at"] = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    (tmp_path / "health.json").write_text(json.dumps(report))
    stale = runner.invoke(ledger, ["status", "--data-dir", str(tmp_path), "--stale-after", "60"])
    assert stale.exit_code == 1 and "stopped or stuck" in stale.output
