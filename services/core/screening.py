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
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from pydantic import BaseModel, SecretStr

from services.core.crypto import normalise_national_id
from services.core.errors import RuleViolation

NOT_FREE_TEXT = frozenset({"agency", "listing_id", "objection_id"})
_SEP = r"[\s\-]?"
_RESIDENT_ID = re.compile(rf"(?<![0-9A-Za-z])\d{{6}}{_SEP}(\d{{8}}){_SEP}\d{{3}}[0-9Xx](?![0-9A-Za-z])")
_OLD_RESIDENT_ID = re.compile(rf"(?<![0-9A-Za-z])\d{{6}}{_SEP}(\d{{6}}){_SEP}\d{{3}}(?![0-9A-Za-z])")


def _is_date(digits: str) -> bool:
    try:
        day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return False
    return 1900 <= day.year <= 2100


def looks_like_national_id(text: str) -> bool:
    """Whether `text` holds something shaped like a PRC resident id with a real birth date."""
    if any(_is_date(m.group(1)) for m in _RESIDENT_ID.finditer(text)):
        return True
    return any(_is_date(f"19{m.group(1)}") for m in _OLD_RESIDENT_ID.finditer(text))


def masked_name_pattern(display_name: str) -> re.Pattern[str] | None:
    """A pattern for the names a masked display name stands for; None if too short to tell."""
    words = display_name.split()
    if not words or sum(len(w) for w in words) < 3:
        return None
    parts = [re.escape(w[0]) + rf"\w{{{len(w) - 1}}}" for w in words]
    return re.compile(r"(?<!\w)" + r"\s+".join(parts) + r"(?!\w)", re.IGNORECASE)


def masked_id_pattern(display_id: str) -> re.Pattern[str] | None:
    """A pattern for the ids a masked display id ('420*************3X') stands for, spelt as
    `normalise_national_id` spells text; None for what is not a masked id of a resident's length."""
    shape = re.fullmatch(r"([0-9A-Z]*)(\*+)([0-9A-Z]*)", display_id.upper())
    if shape is None or len(display_id) < 15:
        return None
    head, stars, tail = shape.groups()
    return re.compile(re.escape(head) + rf"[0-9A-Z]{{{len(stars)}}}" + re.escape(tail))


def free_text(command: BaseModel) -> Iterator[tuple[str, str]]:
    """(field path, text) for every string of `command` a clerk typed: keys of mappings too."""
    for name, value in command:
        if name not in NOT_FREE_TEXT:
            yield from _strings(name, value)


def _strings(path: str, value: Any) -> Iterator[tuple[str, str]]:
    for where, leaf in _leaves(path, value):
        if isinstance(leaf, str):
            yield where, leaf


def _leaves(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    """Every leaf value of a command with its field path: models, mappings (keys too) and sequences."""
    if isinstance(value, BaseModel):
        for name, inner in value:
            yield from _leaves(f"{path}.{name}" if path else name, inner)
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield f"{path}.{key}", key
            yield from _leaves(f"{path}.{key}", inner)
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            yield from _leaves(f"{path}[{index}]", inner)
    else:
        yield path, value


def _own_identifiers(command: BaseModel) -> tuple[list[str], list[str]]:
    """The raw national ids and full names the command itself carries (SecretStr fields)."""
    ids: list[str] = []
    names: list[str] = []
    for path, leaf in _leaves("", command):
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
    ids, names = _own_identifiers(command)
    own_ids = [normalise_national_id(i) for i in ids if normalise_national_id(i)]
    own_names = [n.strip().casefold() for n in names if len(n.strip()) > 1]
    name_patterns = [p for p in map(masked_name_pattern, masked_names) if p is not None]
    id_patterns = [p for p in map(masked_id_pattern, masked_ids) if p is not None]
    for field, text in free_text(command):
        spelt = normalise_national_id(text)
        if (
            looks_like_national_id(text)
            or any(i in spelt for i in own_ids)
            or any(p.search(spelt) for p in id_patterns)
            or any(n in text.casefold() for n in own_names)
            or any(p.search(text) for p in name_patterns)
        ):
            raise RuleViolation(
                "raw_identifier",
                f"{field} holds a national id or the subject's name, which may not be published; "
                "remove it (the listing carries a pseudonym and masked fields)",
            )
