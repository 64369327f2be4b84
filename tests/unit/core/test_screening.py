"""Every free-text field of every command is screened for raw identifiers, through the publisher's
own decision (`decide`, via `Desk`), so a field the screening missed would be published."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.core.commands import AnyCommand, Changes
from services.core.crypto import mask_name
from services.core.errors import RuleViolation
from services.core.events import ObjectionFiled
from services.core.screening import check_free_text, free_text, looks_like_national_id
from tests.unit.publisher import samples
from tests.unit.publisher.desk import Desk

OTHER_ID = "110101199003074518"  # someone else's id: refused by its shape, not because it is the subject's
Build = Callable[[str, str], AnyCommand]  # (listing id, objection id) -> command


def _with(command: AnyCommand, path: str, text: str) -> AnyCommand:
    """`command` with the free-text field at `path` (dotted; `details.<key>`) set to `text`."""
    data: dict[str, Any] = command.model_dump()
    for secret in ("national_id", "full_name"):  # model_dump masks SecretStr: put the raw values back
        if secret in data:
            data[secret] = getattr(command, secret).get_secret_value()
    target, *rest = path.split(".")
    if rest:
        data[target] = {**(data[target] or {}), rest[0]: text}
    else:
        data[target] = text
    return type(command).model_validate(data)


CASES: list[tuple[str, Build, str]] = [
    ("issue", lambda lid, oid: samples.issue(), "legal_basis"),
    ("issue", lambda lid, oid: samples.issue(), "case_ref"),
    ("issue", lambda lid, oid: samples.issue(), "details.court_case"),
    ("issue", lambda lid, oid: samples.issue(), "request_id"),
    ("correct", lambda lid, oid: samples.correct(lid, 1), "reason"),
    ("correct", lambda lid, oid: samples.correct(lid, 1, legal_basis="art. 3"), "changes.legal_basis"),
    ("correct", lambda lid, oid: samples.correct(lid, 1, details={"court_case": "x"}), "changes.details"),
    ("revoke", lambda lid, oid: samples.revoke(lid, 1), "note"),
    ("exempt", lambda lid, oid: samples.exempt(lid), "reason"),
    ("object", lambda lid, oid: samples.object_(lid), "grounds"),
    ("resolve", lambda lid, oid: samples.resolve(lid, oid, "dismissed", "none"), "note"),
]


def _listed() -> tuple[Desk, str, str]:
    """A desk with one listing (by the court) carrying one open objection."""
    desk = Desk()
    listing = desk.submit(samples.issue()).envelope.listing_id
    filed = desk.submit(samples.object_(listing))
    assert isinstance(filed, ObjectionFiled)
    return desk, listing, filed.objection_id


def _set(command: AnyCommand, path: str, text: str) -> AnyCommand:
    if path == "changes.details":
        changes = Changes(details={"court_case": text})
        return command.model_copy(update={"changes": changes})
    if path == "changes.legal_basis":
        return command.model_copy(update={"changes": Changes(legal_basis=text)})
    return _with(command, path, text)


@pytest.mark.parametrize(("verb", "build", "path"), CASES, ids=[f"{v}.{p}" for v, _, p in CASES])
@pytest.mark.parametrize(
    "text",
    [
        f"debtor {OTHER_ID}",
        "id 110101 19900307 451x",
        f"of {samples.NATIONAL_ID[:9]} {samples.NATIONAL_ID[9:]}",
        "old card 110101900307451",
        "spoke to Yu Zhenhua",
    ],
    ids=["an-id", "a-spaced-id", "the-subjects-id", "a-15-digit-id", "the-subjects-name"],
)
def test_each_free_text_field_of_each_command_refuses_a_raw_identifier(
    verb: str, build: Build, path: str, text: str
) -> None:
    desk, listing, objection = _listed()
    clean = build(listing, objection)
    if verb == "issue":
        clean = clean.model_copy(update={"request_id": "fresh"})
    else:
        clean = clean.model_copy(update={"expected_version": desk.states[listing].envelope.version})
    tainted = _set(clean, path, text)
    with pytest.raises(RuleViolation, match="raw_identifier") as refused:
        desk.submit(tainted)
    assert path.split(".")[0] in refused.value.message and text not in refused.value.message
    desk.submit(clean)  # the same command without the identifier is published


def test_lookalikes_are_not_identifiers() -> None:
    lookalikes = [
        "(2026) Hu 0101 Zhi 12",
        "amount 182000000000000000",
        "account 6222021234567890123",
        "case 2026-0101-000123",
        "tel 13800138000",
        "3f2a1b4c-9d8e-4f7a-8b6c-5d4e3f2a1b0c",
    ]
    for text in lookalikes:
        assert not looks_like_national_id(text), text


def test_a_masked_display_name_finds_the_name_it_stands_for() -> None:
    command = samples.revoke("L-1", 1).model_copy(update={"note": "called yu zhenhua twice"})
    with pytest.raises(RuleViolation, match="raw_identifier"):
        check_free_text(command, [mask_name(samples.FULL_NAME)])
    check_free_text(
        command.model_copy(update={"note": "called the debtor twice"}), [mask_name(samples.FULL_NAME)]
    )


def test_every_string_field_of_a_command_is_screened_but_ids_the_log_checks() -> None:
    fields = {path.split(".")[0] for path, _ in free_text(samples.issue())}
    assert {"legal_basis", "case_ref", "details", "request_id", "category", "severity"} <= fields
    assert not fields & {"agency", "national_id", "full_name"}


def test_a_request_id_made_for_the_clerk_never_looks_like_the_subjects_masked_id() -> None:
    """A uuid's hex, its hyphens dropped as ids are spelt, can hold '420' + 13 characters + '34':
    what '420*************34' stands for. The ids commands make for themselves hold no digit."""
    masked = ["420*************34", "110*************1X"]
    uuid_like = samples.revoke("L-1", 1).model_copy(
        update={"request_id": "42012345-6789-0abc-34ef-aaaaaaaaaaaa"}
    )
    with pytest.raises(RuleViolation, match="raw_identifier"):
        check_free_text(uuid_like, masked_ids=masked)
    for _ in range(2_000):
        made = samples.revoke("L-1", 1)
        assert made.request_id.isalpha() and len(made.request_id) == 26
        check_free_text(made, masked_ids=masked)


def test_texts_are_screened_each_on_its_own_not_run_together() -> None:
    """The texts are tried joined first: an id or a name split across two fields spells nothing,
    and of several fields the refusal names the one that holds the id."""
    half = len(samples.NATIONAL_ID) // 2
    first, last = samples.NATIONAL_ID[:half], samples.NATIONAL_ID[half:]
    split = _with(_with(samples.issue(), "legal_basis", f"art. 3 {first}"), "case_ref", f"{last} zhi")
    check_free_text(split)
    given, family = samples.FULL_NAME.split(maxsplit=1)
    check_free_text(_with(_with(samples.issue(), "legal_basis", f"art. 3 {given}"), "case_ref", family))
    both = _with(_with(samples.issue(), "legal_basis", "art. 3"), "case_ref", f"ref {OTHER_ID}")
    with pytest.raises(RuleViolation, match="raw_identifier: case_ref holds"):
        check_free_text(both)
