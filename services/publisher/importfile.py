"""The lines of an import file, and the command each one stands for, with an id that survives a re-run.

A file holds one command per line: JSON Lines (one object of command fields a line)
or CSV (a header row of field names; dotted names for nested fields such as
`changes.measures` or `details.amount_owed`; list fields separated by `;`; empty cells
left out). Either way the line names its verb in `command` (issue, correct, revoke,
exempt, object, resolve) and is otherwise the command `accord publish <verb> --file`
takes, checked by the same models. A change may name the listing an issue of the same
file creates by that issue's request id (`listing_request_id`) instead of its id.

A line without its own `request_id` gets one derived from a keyed hash of the import
id (by default the file's content hash), its content and how many identical lines came
before it, spelt in letters (the screening would take some digit runs for a national
id): the same file imported again gives every line the same event id, so what was
published before is recognised, never repeated. The hash is keyed (the pseudonym
key), since the request id is published and the content holds the subject's national id.
A malformed line is reported by number; its content is never echoed.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from services.core.commands import AnyCommand, listing_id_of
from services.core.errors import RuleViolation
from services.publisher.build import EVENT_TYPES
from services.publisher.refusals import invalid_model

FORMATS = ("jsonl", "csv")
# verb -> command model: "issue" -> IssueCommand, … "resolve" -> ResolveCommand
COMMANDS = {model.__name__.removesuffix("Command").lower(): model for model in EVENT_TYPES}
LIST_FIELDS = frozenset({"measures", "changes.measures"})  # CSV cells split on LIST_SEPARATOR
LIST_SEPARATOR = ";"
LETTERS = str.maketrans("0123456789abcdef", "ghijklmnopqrstuv")  # hex spelt without digits
NOT_TEXT = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, kept by surrogateescape


@dataclass(frozen=True)
class Line:
    """One line (a CSV record: the line it starts on) and its fields, or why it could not be read."""

    number: int
    fields: Mapping[str, Any] | None
    fault: str = ""


def format_of(path: Path, given: str | None) -> str:
    """The file's format: `given`, else from its extension (.jsonl/.ndjson/.json, .csv)."""
    if given:
        return given
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise RuleViolation("invalid_command", f"cannot tell the format of {path.name}: name it with --format")


def import_id_of(path: Path) -> str:
    """The default import id: the file's content hash, so re-running the same file is recognised."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:24]


def read_lines(path: Path, fmt: str) -> Iterator[Line]:
    """Every non-blank line of `path`, in order; a line that cannot be read is yielded with its fault."""
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as stream:
        yield from (_jsonl(stream) if fmt == "jsonl" else _csv(stream))


def _jsonl(stream: TextIO) -> Iterator[Line]:
    for number, text in enumerate(stream, 1):
        if not text.strip():
            continue
        if NOT_TEXT.search(text):
            yield Line(number, None, "not UTF-8 text")
            continue
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as e:
            yield Line(number, None, f"not JSON: {e.msg} (column {e.colno})")
            continue
        if isinstance(loaded, dict):
            yield Line(number, loaded)
        else:
            yield Line(number, None, "a line must hold one JSON object of command fields")


def _csv(stream: TextIO) -> Iterator[Line]:
    reader = csv.reader(stream, strict=True)
    header = next(reader, None)
    if header is None:
        return
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield Line(start, None, f"not CSV: {e}")
            start = reader.line_num + 1
            continue
        number, start = start, reader.line_num + 1
        if any(cell.strip() for cell in row):
            yield _row(number, header, row)


def _row(number: int, header: list[str], row: list[str]) -> Line:
    if len(row) != len(header):
        return Line(number, None, f"{len(row)} cells for the header's {len(header)} columns")
    if any(NOT_TEXT.search(cell) for cell in row):
        return Line(number, None, "not UTF-8 text")
    fields: dict[str, Any] = {}
    for column, cell in zip(header, row, strict=True):
        if cell == "":
            continue
        *parents, leaf = column.strip().split(".")
        target = fields
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = cell.split(LIST_SEPARATOR) if column.strip() in LIST_FIELDS else cell
    return Line(number, fields)


class Commands:
    """Turns the lines of one import into commands; `request_ids` numbers identical lines apart."""

    def __init__(self, key: bytes, import_id: str, agency: str) -> None:
        self._key, self._import_id, self._agency = key, import_id, agency
        self._seen: Counter[str] = Counter()

    def command(self, line: Line) -> AnyCommand:
        """The command `line` stands for, or the `RuleViolation` (`invalid_command`) saying why not."""
        if line.fields is None:
            raise RuleViolation("invalid_command", f"line {line.number} is not readable: {line.fault}")
        fields = dict(line.fields)
        model = COMMANDS.get(str(fields.pop("command", "")))
        if model is None:
            raise RuleViolation("invalid_command", f"command must be one of {', '.join(COMMANDS)}")
        fields.setdefault("agency", self._agency)
        if "request_id" not in fields:  # the keyed hash only when needed: it is 6 % of a line
            fields["request_id"] = self.request_id(line.fields)
        _name_listing(fields)
        try:
            return model.model_validate(fields)
        except ValidationError as e:
            refusal = invalid_model(e)
            raise RuleViolation(refusal.code, refusal.reason) from None

    def request_id(self, fields: Mapping[str, Any]) -> str:
        """Keyed hash of the import id and the line's content, numbered among identical lines.

        Spelt in letters only: a request id is screened as free text, and hex digits could
        spell what the screening takes for a national id (masked or not)."""
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
        content = self._keyed(f"import|{self._import_id}|{canonical}")
        self._seen[content] += 1
        return "import-" + self._keyed(f"{content}|{self._seen[content]}").translate(LETTERS)

    def _keyed(self, material: str) -> str:
        return hmac.digest(self._key, material.encode(), "sha256").hex()[:32]  # one-shot, in C


def _name_listing(fields: dict[str, Any]) -> None:
    """A change naming the listing by the request id of the issue that created it gets its id."""
    issued_by = fields.pop("listing_request_id", None)
    if issued_by is None:
        return
    if "listing_id" in fields:
        raise RuleViolation("invalid_command", "give listing_id or listing_request_id, not both")
    fields["listing_id"] = listing_id_of(str(fields["agency"]), str(issued_by))
