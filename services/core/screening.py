"""Free text is published: no command may carry a raw identifier in it.

Every string a clerk types into a command (legal basis, case reference, details, a
correction's reason, a revocation's or resolution's note, an exemption's reason, an
objection's grounds, the request id: all end up in a topic) is screened, not a chosen
few: a field added tomorrow is screened by default. Refused are

- anything shaped like a PRC resident id: 18 characters (17 digits and a digit or X,
  spaces or hyphens allowed between the region, birth date and sequence parts) or the
  old 15-digit form, whose birth-date part is a real date; the date keeps bank
  account and case numbers out;
- the command's own subject: its raw national id and full name where the command
  carries them (issue, a correction of the name), else an id or a name matching the
  listing's masked display fields (the same visible characters and lengths:
  '420*************3X' matches the subject's id however it is spaced, 'Y* Z******'
  matches 'Yu Zhenhua').

Fields the publisher checks against the policy or the log (agency, listing and
objection ids) are not free text. Pure: ids are spelt as pseudonyms spell them (`crypto`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property, lru_cache
from typing import Any

from pydantic import BaseModel, SecretStr

from services.core.crypto import normalise_national_id
from services.core.errors import RuleViolation

# Every text of a command, joined by a character no id, name or their patterns take and no
# boundary test counts as part of a word: whatever one text holds, the joined text holds too, so
# a command with none is passed in one test; one with some is tried text by text, for the field.
JOINER = "\x00"
NOT_FREE_TEXT = frozenset({"agency", "listing_id", "objection_id"})
MASKED_ID_MIN = 15  # the old resident id's length: a masked id is one of a resident's length
_SEP = r"[\s\-]?"
_RESIDENT_ID = re.compile(rf"(?<![0-9A-Za-z])\d{{6}}{_SEP}(\d{{8}}){_SEP}\d{{3}}[0-9Xx](?![0-9A-Za-z])")
_NO_TEXT = frozenset({bool, int, float, date, datetime, type(None)})
_SIX_DIGITS = re.compile(r"\d{6}")
_OLD_RESIDENT_ID = re.compile(rf"(?<![0-9A-Za-z])\d{{6}}{_SEP}(\d{{6}}){_SEP}\d{{3}}(?![0-9A-Za-z])")


def _is_date(digits: str) -> bool:
    try:
        day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return False
    return 1900 <= day.year <= 2100


def looks_like_national_id(text: str) -> bool:
    """Whether `text` holds something shaped like a PRC resident id with a real birth date."""
    if _SIX_DIGITS.search(text) is None:  # both forms start with six digits: most text has none
        return False
    if any(_is_date(m.group(1)) for m in _RESIDENT_ID.finditer(text)):
        return True
    return any(_is_date(f"19{m.group(1)}") for m in _OLD_RESIDENT_ID.finditer(text))


@lru_cache(maxsize=1024)  # a listing's changes are screened against the same display fields
def masked_name_pattern(display_name: str) -> re.Pattern[str] | None:
    """A pattern for the names a masked display name stands for; None if too short to tell."""
    words = display_name.split()
    if not words or sum(len(w) for w in words) < 3:
        return None
    parts = [re.escape(w[0]) + rf"\w{{{len(w) - 1}}}" for w in words]
    return re.compile(r"(?<!\w)" + r"\s+".join(parts) + r"(?!\w)", re.IGNORECASE)


@lru_cache(maxsize=1024)
def masked_id_pattern(display_id: str) -> re.Pattern[str] | None:
    """A pattern for the ids a masked display id ('420*************3X') stands for, spelt as
    `normalise_national_id` spells text; None for what is not a masked id of a resident's length."""
    shape = re.fullmatch(r"([0-9A-Z]*)(\*+)([0-9A-Z]*)", display_id.upper())
    if shape is None or len(display_id) < MASKED_ID_MIN:
        return None
    head, stars, tail = shape.groups()
    return re.compile(re.escape(head) + rf"[0-9A-Z]{{{len(stars)}}}" + re.escape(tail))


def free_text(command: BaseModel) -> list[tuple[str, str]]:
    """(field path, text) for every string of `command` a clerk typed: keys of mappings too."""
    return _texts(_leaves("", command))


def _texts(leaves: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    """The free text among a command's leaves: the fields that are not are top-level strings."""
    return [(path, leaf) for path, leaf in leaves if isinstance(leaf, str) and path not in NOT_FREE_TEXT]


def _leaves(path: str, value: Any) -> list[tuple[str, Any]]:
    """Every leaf value of a command with its field path: models, mappings (keys too) and sequences."""
    found: list[tuple[str, Any]] = []
    _collect(path, value, found)
    return found


def _collect(path: str, value: Any, found: list[tuple[str, Any]]) -> None:
    """The string and secret leaves under `value` into `found` (dates, numbers and flags hold no text)."""
    kind = type(value)
    if kind is str or kind is SecretStr:
        found.append((path, value))
    elif kind is dict:
        for key, inner in value.items():
            found.append((f"{path}.{key}", key))
            _collect(f"{path}.{key}", inner, found)
    elif kind is list or kind is tuple:
        for index, inner in enumerate(value):
            _collect(f"{path}[{index}]", inner, found)
    elif isinstance(value, BaseModel):
        for name, inner in value.__dict__.items():
            if type(inner) not in _NO_TEXT:  # most fields: skip the call for a date or a flag
                _collect(f"{path}.{name}" if path else name, inner, found)
    elif isinstance(value, str | SecretStr):  # a StrEnum
        found.append((path, value))
    elif isinstance(value, dict):
        _collect(path, dict(value), found)
    elif isinstance(value, list | tuple):
        _collect(path, list(value), found)


def _own_identifiers(leaves: list[tuple[str, Any]]) -> tuple[list[str], list[str]]:
    """The raw national ids and full names among a command's leaves (its SecretStr fields)."""
    ids: list[str] = []
    names: list[str] = []
    for path, leaf in leaves:
        if isinstance(leaf, SecretStr):
            (ids if path.endswith("national_id") else names).append(leaf.get_secret_value())
    return ids, names


def check_free_text(
    command: BaseModel, masked_names: Iterable[str] = (), masked_ids: Iterable[str] = ()
) -> None:
    """Refuse `command` if any free-text field holds a raw identifier (see the module's docstring).

    `masked_names` and `masked_ids` are the listing's display fields, for commands that do
    not carry the subject's raw identifiers themselves.
    """
    leaves = _leaves("", command)  # one walk for both the identifiers and the text
    ids, names = _own_identifiers(leaves)
    subject = _Subject(
        ids=[normalise_national_id(i) for i in ids if normalise_national_id(i)],
        id_patterns=[p for p in map(masked_id_pattern, masked_ids) if p is not None],
        names=[n.strip().casefold() for n in names if len(n.strip()) > 1],
        name_patterns=[p for p in map(masked_name_pattern, masked_names) if p is not None],
    )
    texts = _texts(leaves)
    if not _refused(subject, JOINER.join(text for _, text in texts)):
        return  # the usual case, tried once on every text together (see JOINER)
    for field, text in texts:
        if _refused(subject, text):
            raise RuleViolation(
                "raw_identifier",
                f"{field} holds a national id or the subject's name, which may not be published; "
                "remove it (the listing carries a pseudonym and masked fields)",
            )


def _refused(subject: _Subject, text: str) -> bool:
    return subject.named_in(text) or looks_like_national_id(text)


@dataclass(frozen=True)
class _Subject:
    """What would identify a command's subject in its text: its own raw id and name, and the
    patterns of the listing's masked ones."""

    ids: list[str]
    id_patterns: list[re.Pattern[str]]
    names: list[str]
    name_patterns: list[re.Pattern[str]]

    @cached_property
    def shortest_id(self) -> int:
        """Spelling an id takes at least its length (a masked id's pattern: 15 or more)."""
        lengths = [len(i) for i in self.ids] + ([MASKED_ID_MIN] if self.id_patterns else [])
        return min(lengths, default=sys.maxsize)

    def named_in(self, text: str) -> bool:
        if len(text) >= self.shortest_id:
            spelt = normalise_national_id(text)
            if any(i in spelt for i in self.ids) or any(p.search(spelt) for p in self.id_patterns):
                return True
        if self.names and any(n in text.casefold() for n in self.names):
            return True
        return any(p.search(text) for p in self.name_patterns)
