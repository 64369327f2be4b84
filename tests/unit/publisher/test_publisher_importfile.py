"""The lines of an import file (JSON Lines and CSV) and the ids derived for them; no broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.core.commands import CorrectCommand, IssueCommand, listing_id_of
from services.core.errors import RuleViolation
from services.publisher.importfile import Commands, Line, format_of, import_id_of, read_lines
from tests.unit.publisher.samples import NATIONAL_ID, PSEUDONYM_KEY, issue

ISSUE = {"command": "issue", **issue().model_dump(mode="json", exclude={"agency", "request_id"}),
         "national_id": NATIONAL_ID, "full_name": "Yu Zhenhua"}  # fmt: skip


def commands(import_id: str = "imp-1", key: bytes = PSEUDONYM_KEY) -> Commands:
    return Commands(key, import_id, "court")


def jsonl(tmp_path: Path, *lines: str | dict[str, Any]) -> list[Line]:
    path = tmp_path / "file.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return list(read_lines(path, "jsonl"))


def test_jsonl_lines_keep_their_numbers_and_name_what_is_wrong_without_echoing_it(tmp_path: Path) -> None:
    read = jsonl(tmp_path, ISSUE, "", '{"national_id": "420102199005171234",', "[1]", ISSUE)
    assert [line.number for line in read] == [1, 3, 4, 5]
    assert read[0].fields == ISSUE and read[3].fields == ISSUE
    assert read[1].fields is None and read[1].fault.startswith("not JSON")
    assert "420102199005171234" not in read[1].fault
    assert read[2].fields is None and "one JSON object" in read[2].fault


def test_a_line_that_is_not_utf8_is_malformed_and_the_next_line_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "file.jsonl"
    path.write_bytes(b'{"command": "issue", "full_name": "\xff"}\n' + json.dumps(ISSUE).encode() + b"\n")
    read = list(read_lines(path, "jsonl"))
    assert read[0].fault == "not UTF-8 text" and read[1].fields == ISSUE


def test_csv_rows_nest_dotted_columns_split_lists_and_drop_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "file.csv"
    path.write_text(
        "command,listing_id,expected_version,changes.measures,changes.details.amount,reason,note\n"
        'correct,L1,1,flight_ban;rail_ban,10,"a reason\nover two lines",\n'
        "correct,L2\n"
        "\n"
        "revoke,L3,2,,,mislisting,\n"
    )
    read = list(read_lines(path, "csv"))
    assert [line.number for line in read] == [2, 4, 6]
    changes = {"measures": ["flight_ban", "rail_ban"], "details": {"amount": "10"}}
    assert read[0].fields == {"command": "correct", "listing_id": "L1", "expected_version": "1",
                              "changes": changes, "reason": "a reason\nover two lines"}  # fmt: skip
    assert read[1].fields is None and "2 cells" in read[1].fault
    assert read[2].fields == {"command": "revoke", "listing_id": "L3", "expected_version": "2",
                              "reason": "mislisting"}  # fmt: skip
    assert isinstance(commands().command(read[0]), CorrectCommand)


def test_the_format_comes_from_the_extension_unless_given(tmp_path: Path) -> None:
    assert format_of(Path("a.jsonl"), None) == "jsonl" and format_of(Path("a.CSV"), None) == "csv"
    assert format_of(Path("a.txt"), "csv") == "csv"
    with pytest.raises(RuleViolation, match="--format"):
        format_of(Path("a.txt"), None)


def test_a_line_gets_the_same_event_id_in_every_run_of_the_same_import() -> None:
    line = Line(7, ISSUE)
    first, again = commands().command(line), commands().command(line)
    assert isinstance(first, IssueCommand) and first.event_id == again.event_id
    assert first.listing_id == again.listing_id and first.request_id.startswith("import-")
    assert NATIONAL_ID not in first.request_id


def test_derived_request_ids_hold_no_digit_the_screening_could_take_for_a_national_id() -> None:
    """A correction's request id is screened against the listing's masked id ('420***********3X'):
    hex digits matched it about once in a few thousand lines."""
    made = commands()
    ids = [made.command(Line(n, {**ISSUE, "case_ref": f"case {n}"})).request_id for n in range(2000)]
    assert not any(character.isdigit() for request_id in ids for character in request_id)
    assert len(set(ids)) == len(ids)


def test_ids_differ_by_import_by_key_by_content_and_by_repetition() -> None:
    made = commands()
    twice = [made.command(Line(1, ISSUE)).event_id, made.command(Line(2, ISSUE)).event_id]
    assert twice[0] != twice[1]  # an identical line repeated is another command
    assert twice[0] == commands().command(Line(5, ISSUE)).event_id  # its number in the file does not count
    others = {
        commands("imp-2").command(Line(1, ISSUE)).event_id,
        commands(key=b"another-key").command(Line(1, ISSUE)).event_id,
        commands().command(Line(1, {**ISSUE, "case_ref": "(2026) 13"})).event_id,
    }
    assert twice[0] not in others and len(others) == 3


def test_a_given_request_id_and_a_listing_named_by_its_issue_are_kept() -> None:
    made = commands()
    issued = made.command(Line(1, {**ISSUE, "request_id": "case-12"}))
    fix = {"command": "correct", "listing_request_id": "case-12", "expected_version": 1,
           "changes": {"measures": ["flight_ban"]}, "reason": "rail ban listed by mistake"}  # fmt: skip
    corrected = made.command(Line(2, fix))
    assert issued.request_id == "case-12" and corrected.listing_id == issued.listing_id
    assert corrected.listing_id == listing_id_of("court", "case-12")
    with pytest.raises(RuleViolation, match="not both"):
        made.command(Line(3, {**fix, "listing_id": "L1"}))


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"command": "ban"}, "command must be one of"),
        ({**ISSUE, "colour": "red"}, "colour"),
        ({**ISSUE, "birth_date": "not a date"}, "birth_date"),
        (None, "line 4 is not readable"),
    ],
)
def test_a_line_that_is_no_command_is_refused_as_invalid(fields: dict[str, Any] | None, says: str) -> None:
    with pytest.raises(RuleViolation) as refused:
        commands().command(Line(4, fields, "not JSON"))
    assert refused.value.code == "invalid_command" and says in refused.value.message
    assert NATIONAL_ID not in refused.value.message


def test_the_default_import_id_is_the_files_content_hash(tmp_path: Path) -> None:
    for name, content in (("a", "same"), ("b", "same"), ("c", "other")):
        (tmp_path / name).write_text(content)
    assert import_id_of(tmp_path / "a") == import_id_of(tmp_path / "b") != import_id_of(tmp_path / "c")
