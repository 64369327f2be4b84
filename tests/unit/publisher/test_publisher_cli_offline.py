"""The CLI's answers that need no broker: a keystore, and malformed commands refused as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from services.cli import main
from services.core.crypto import TrustAnchor
from services.core.errors import BrokerUnavailable, ConfigurationError, ConflictError, RuleViolation
from services.core.policy import load_policy
from services.core.topics import BACKBONE
from services.publisher.errors import LedgerRefusal, Undecided, ledger_refusal
from services.publisher.refusals import refusal_of
from services.publisher.state import Receipt


def test_keys_init_makes_a_key_for_every_agency_of_the_policy(tmp_path: Path) -> None:
    env = {"ACCORD_STATE_DIR": str(tmp_path / "state")}
    result = CliRunner(env=env).invoke(main, ["keys", "init", "--dir", str(tmp_path / "keys")])
    assert result.exit_code == 0, result.output
    agencies = {a.id for a in load_policy().agencies}
    public = json.loads(result.output)["public_keys"]
    assert set(public) == agencies
    trusted = TrustAnchor(tmp_path / "state" / "trust" / "public_keys.yaml").public_keys()
    assert trusted == public
    issuers = agencies - {BACKBONE}  # the backbone's own key is kept apart from the agencies'
    assert {p.stem for p in (tmp_path / "keys").iterdir()} == issuers
    assert (tmp_path / "state" / "backbone" / "keys" / "backbone.key").exists()
    assert all((tmp_path / "keys" / f"{a}.key").stat().st_mode & 0o777 == 0o600 for a in issuers)


def test_a_malformed_command_is_refused_before_any_broker_is_asked(tmp_path: Path) -> None:
    command = tmp_path / "issue.yaml"
    command.write_text(yaml.safe_dump({"national_id": "420102199001011234", "measures": ["flight_ban"]}))
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "ACCORD_KEYSTORE": str(tmp_path / "none")}
    result = CliRunner(env=env).invoke(
        main, ["publish", "issue", "--agency", "court", "--file", str(command)], input="Yu Hua\n"
    )
    assert result.exit_code == 3
    answer = json.loads(result.output)
    assert answer["refused"] == "invalid_command" and "category" in answer["reason"]
    assert "420102199001011234" not in result.output


@pytest.mark.parametrize("content", [b"measures: [flight_ban", b"\xff\xfe not text", b"- a list"])
def test_a_command_file_that_is_not_one_mapping_is_refused_as_json(tmp_path: Path, content: bytes) -> None:
    command = tmp_path / "issue.yaml"
    command.write_bytes(content)
    result = CliRunner().invoke(main, ["publish", "issue", "--agency", "court", "--file", str(command)])
    assert result.exit_code == 3, result.output
    answer = json.loads(result.output)
    assert answer["refused"] == "invalid_command" and str(command) in answer["reason"]


@pytest.mark.parametrize(
    ("error", "status", "exit_code"),
    [
        (RuleViolation("minor_subject", "x"), 422, 3),
        (ConflictError("stale_version", "x"), 409, 4),
        (BrokerUnavailable("down"), 503, 5),
        (ConfigurationError("no key"), 500, 6),
        (LedgerRefusal("bad_signature", "x", "e-1"), 422, 3),
        (ledger_refusal("version_conflict", "x", "e-1"), 409, 4),
        (
            Undecided(
                Receipt(
                    listing_id="L",
                    version=2,
                    event_id="e",
                    event_type="ListingCorrected",
                    agency="court",
                    request_id="r",
                    status="undecided",
                ),
                1.0,
            ),
            202,
            8,
        ),
    ],
)
def test_each_error_family_has_one_http_status_and_one_exit_status(
    error: Exception, status: int, exit_code: int
) -> None:
    refusal = refusal_of(error)  # type: ignore[arg-type]
    assert (refusal.http_status, refusal.exit_code) == (status, exit_code)


@pytest.mark.parametrize("flag", ["--national-id", "--full-name"])
@pytest.mark.parametrize("verb", ["issue", "correct"])
def test_no_identifier_is_taken_from_a_flag(verb: str, flag: str) -> None:
    result = CliRunner().invoke(main, ["publish", verb, "--agency", "court", flag, "420102199001011234"])
    assert result.exit_code == 2 and "never taken from the command line" in result.output
    assert "420102199001011234" not in result.output
    assert flag not in CliRunner().invoke(main, ["publish", verb, "--help"]).output


def test_identifiers_missing_from_the_file_are_read_from_stdin_one_per_line(tmp_path: Path) -> None:
    command = tmp_path / "issue.yaml"
    command.write_text(yaml.safe_dump({"measures": ["flight_ban"]}))
    args = ["publish", "issue", "--agency", "court", "--file", str(command)]
    half = CliRunner().invoke(main, args, input="420102199001011234\n")
    assert half.exit_code == 3 and json.loads(half.output)["refused"] == "invalid_command"
    assert "no full name on standard input" in json.loads(half.output)["reason"]
    both = CliRunner().invoke(main, args, input="420102199001011234\nYu Hua\n")
    refusal = json.loads(both.output)
    assert both.exit_code == 3 and "category" in refusal["reason"]
    assert "national_id" not in refusal["reason"] and "full_name" not in refusal["reason"]
    assert "420102199001011234" not in both.output and "Yu Hua" not in both.output


def test_an_agency_makes_its_own_key_and_the_backbone_registers_its_public_key(tmp_path: Path) -> None:
    env = {"ACCORD_STATE_DIR": str(tmp_path / "backbone-host")}
    made = CliRunner(env=env).invoke(
        main, ["keys", "init", "--agency", "court", "--dir", str(tmp_path / "court")]
    )
    assert made.exit_code == 0, made.output
    public = json.loads(made.output)["public_keys"]["court"]
    assert [p.name for p in (tmp_path / "court").iterdir()] == ["court.key"]
    anchor = TrustAnchor(tmp_path / "backbone-host" / "trust" / "public_keys.yaml")
    assert not anchor.path.exists()  # the agency's step does not touch the backbone's trust
    trusted = CliRunner(env=env).invoke(main, ["keys", "trust", "--agency", "court", "--public-key", public])
    assert trusted.exit_code == 0, trusted.output
    assert anchor.public_keys() == {"court": public}
    garbled = CliRunner(env=env).invoke(main, ["keys", "trust", "--agency", "court", "--public-key", "x!"])
    assert garbled.exit_code == 2 and anchor.public_keys() == {"court": public}


def test_an_import_file_of_no_known_format_is_refused_before_any_broker_is_asked(tmp_path: Path) -> None:
    path = tmp_path / "listings.txt"
    path.write_text('{"command": "issue", "national_id": "420102199001011234"}\n')
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "ACCORD_STATE_DIR": str(tmp_path / "state")}
    result = CliRunner(env=env).invoke(main, ["publish", "import", str(path)])
    assert result.exit_code == 3, result.output
    answer = json.loads(result.output)
    assert answer["refused"] == "invalid_command" and "--format" in answer["reason"]
    assert "420102199001011234" not in result.output
