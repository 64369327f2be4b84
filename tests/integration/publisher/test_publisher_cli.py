"""`accord keys init` and `accord publish …` against the real broker: JSON out, exit status by outcome."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from services.cli import main
from services.core.events import ListingIssued
from tests.integration.publisher.conftest import Backbone, closed_port


def accord(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[Result, dict[str, Any]]:
    result = CliRunner(env=env).invoke(main, list(args), input=stdin)
    return result, json.loads(result.output)


def issue_file(folder: Path) -> Path:
    now = datetime.now(UTC)
    command = {
        "national_id": "420102199005171234",
        "full_name": "Yu Zhenhua",
        "birth_date": "1990-05-17",
        "category": "judgment_default",
        "measures": ["flight_ban", "rail_ban"],
        "legal_basis": "SPC Provisions on Restricting High Consumption (2015), art. 3",
        "severity": "serious",
        "case_ref": "(2026) Hu 0101 Zhi 12",
        "notice_served_at": (now - timedelta(days=10)).isoformat(),
        "effective_from": now.isoformat(),
    }
    path = folder / "issue.yaml"
    path.write_text(yaml.safe_dump(command))
    return path


def test_publish_from_a_file_and_flags_with_exit_status_by_outcome(
    publisher_env: dict[str, str], tmp_path: Path
) -> None:
    env = publisher_env
    made, _ = accord(env, "keys", "init")
    assert made.exit_code == 0
    file = str(issue_file(tmp_path))
    issued, receipt = accord(
        env, "publish", "issue", "--agency", "court", "--file", file, "--request-id", "r-1"
    )
    assert issued.exit_code == 0 and receipt["version"] == 1 and not receipt["duplicate"]
    again, repeat = accord(
        env, "publish", "issue", "--agency", "court", "--file", file, "--request-id", "r-1"
    )
    assert again.exit_code == 0 and repeat == {**receipt, "duplicate": True}
    listing = receipt["listing_id"]
    fix = ["publish", "correct", "--agency", "court", "--listing-id", listing, "--expected-version", "1",
           "--measure", "flight_ban", "--reason", "rail ban listed by mistake"]  # fmt: skip
    corrected, correction = accord(env, *fix)
    assert corrected.exit_code == 0 and correction["version"] == 2
    stale, conflict = accord(env, *fix[:-1], "a second clerk's reason")
    assert stale.exit_code == 4 and conflict["refused"] == "stale_version"
    minor, refusal = accord(
        env, "publish", "issue", "--agency", "court", "--file", file, "--birth-date", "2015-01-01"
    )
    assert minor.exit_code == 3 and refusal["refused"] == "minor_subject" and refusal["reason"]
    shown, state = accord(env, "publish", "show", listing)
    assert shown.exit_code == 0 and state["envelope"]["version"] == 2 and state["measures"] == ["flight_ban"]


def test_an_unreachable_broker_exits_5_and_says_so(publisher_env: dict[str, str], tmp_path: Path) -> None:
    env = publisher_env
    accord(env, "keys", "init")
    down = {**env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}", "ACCORD_PUBLISH_TIMEOUT_S": "2"}
    result, answer = accord(
        down, "publish", "issue", "--agency", "court", "--file", str(issue_file(tmp_path))
    )
    assert result.exit_code == 5 and answer["refused"] == "broker_unavailable"


def test_the_cli_acts_for_its_keys_agency_with_identifiers_from_stdin(
    publisher_env: dict[str, str], backbone: Backbone, tmp_path: Path
) -> None:
    path = issue_file(tmp_path)
    command = yaml.safe_load(path.read_text())
    del command["national_id"], command["full_name"]
    path.write_text(yaml.safe_dump(command))
    issued, receipt = accord(publisher_env, "publish", "issue", "--file", str(path),
                             stdin="420102199005171234\nYu Zhenhua\n")  # fmt: skip
    assert issued.exit_code == 0, issued.output
    assert receipt["topic"] == backbone.topics.listings("court")  # the key's agency: no --agency given
    (event,) = [d.event for d in backbone.published()]
    assert isinstance(event, ListingIssued) and event.display_name == "Y* Z******"
    posing, refusal = accord(publisher_env, "publish", "issue", "--agency", "luoshan-police", "--file",
                             str(path), stdin="420102199005171234\nYu Zhenhua\n")  # fmt: skip
    assert posing.exit_code == 7 and refusal["refused"] == "not_your_agency"
    unkeyed = {k: v for k, v in publisher_env.items() if k != "ACCORD_SIGNING_KEY_FILE"}
    nokey, refusal = accord(unkeyed, "publish", "revoke", "--listing-id", receipt["listing_id"],
                            "--expected-version", "1", "--reason", "other")  # fmt: skip
    assert nokey.exit_code == 6 and "ACCORD_SIGNING_KEY_FILE" in refusal["reason"]
    assert len(backbone.published()) == 1
