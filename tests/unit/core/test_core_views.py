"""Views: each agency sees only what it is entitled to, and learns when it stops being entitled.

Random listings over the repository's policy, checked for every agency: an upsert
carries exactly the entitled fields and enforced measures; a delete goes out when a
correction removes the last measure an agency enforces, or the listing ends; an
agency never entitled hears nothing. The expectations are computed here from
`agencies.yaml`, not by calling the code under test.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.events import (
    Envelope,
    Exemption,
    ExemptionGranted,
    ListingCorrected,
    ListingEvent,
    ListingExpired,
    ListingIssued,
    ListingRevoked,
    ListingState,
    ObjectionFiled,
    RevocationReason,
)
from services.core.listing import evolve
from services.core.policy import Agency, load_policy
from services.core.views import (
    ATTRIBUTE_FIELDS,
    VIEW_NAMESPACE,
    ViewRow,
    entitled_fields,
    project,
    upsert_change,
    view_change,
    view_event_id,
    views_of,
)

POLICY = load_policy()
AGENCIES = [a.id for a in POLICY.agencies]
MEASURES = [m.code for m in POLICY.measures]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
AT = T0 + timedelta(hours=1)
FAST = settings(max_examples=60, deadline=None)


def envelope(version: int, agency: str = "court", listing_id: str = "L-1") -> Envelope:
    return Envelope(
        event_id=f"e-{listing_id}-{version}",
        listing_id=listing_id,
        version=version,
        agency=agency,
        occurred_at=T0 + timedelta(days=version),
        recorded_at=T0 + timedelta(days=version),
    )


def next_envelope(state: ListingState) -> Envelope:
    return envelope(state.envelope.version + 1, state.issuer, state.envelope.listing_id)


def apply(state: ListingState, cls: type[ListingEvent], **payload: Any) -> ListingState:
    """`state` after an event of type `cls` made against its current version."""
    if cls is not ListingExpired:
        payload["expected_version"] = state.envelope.version
    return evolve(state, cls(envelope=next_envelope(state), **payload))


@st.composite
def listings(draw: st.DrawFn) -> ListingState:
    """A live listing: any category, measures, catalogue details, exemptions, maybe disputed."""
    category = draw(st.sampled_from(POLICY.categories))
    measures = draw(st.lists(st.sampled_from(MEASURES), min_size=1, max_size=4, unique=True))
    state = evolve(
        None,
        ListingIssued(
            envelope=envelope(1, draw(st.sampled_from(POLICY.issuers))),
            subject_ref="s-1",
            subject_kind=draw(st.sampled_from(["person", "organisation"])),
            display_name=draw(st.text(min_size=1, max_size=6)),
            display_id="420***12",
            category=category.code,
            measures=measures,
            legal_basis="basis",
            severity="severe",
            case_ref="case-1",
            details=draw(st.dictionaries(st.sampled_from(category.fields), st.text(max_size=6), max_size=3)),
            notice_served_at=T0 - timedelta(days=10),
            effective_from=T0,
            expires_at=T0 + timedelta(days=365),
        ),
    )
    for measure in draw(st.lists(st.sampled_from(measures), max_size=2)):
        exemption = Exemption(
            exemption_id=measure, measure=measure, starts_at=T0, ends_at=AT, reason="medical"
        )
        state = apply(state, ExemptionGranted, exemption=exemption)
    if draw(st.booleans()):
        state = apply(state, ObjectionFiled, objection_id="o", kind="objection", grounds="g", due_at=AT)
    return state


def enforced(state: ListingState, agency: str) -> list[str]:
    return [m for m in state.measures if agency in POLICY.measure_by_code[m].enforced_by]


def expected_fields(state: ListingState, agency: Agency) -> dict[str, str]:
    """What `agency` may see, read straight from its `fields` entitlement."""
    out = {}
    for name in agency.fields:
        if name.startswith("details."):
            if name.removeprefix("details.") in state.details:
                out[name] = state.details[name.removeprefix("details.")]
        else:
            out[name] = getattr(state, name)
    return out


def test_every_entitled_field_names_something_a_listing_has() -> None:
    """A typo in agencies.yaml would silently withhold a field forever."""
    detail_fields = {f"details.{f}" for c in POLICY.categories for f in c.fields}
    for agency in POLICY.agencies:
        unknown = set(agency.fields) - set(ATTRIBUTE_FIELDS) - detail_fields
        assert not unknown, f"{agency.id} is entitled to fields no listing has: {sorted(unknown)}"
    assert set(ATTRIBUTE_FIELDS) <= set(ListingState.model_fields)


@FAST
@given(state=listings())
def test_project_carries_only_entitled_fields_and_enforced_measures(state: ListingState) -> None:
    for agency in POLICY.agencies:
        row = project(state, agency.id, POLICY)
        measures = enforced(state, agency.id)
        if not measures:
            assert row is None, f"{agency.id} enforces none of {state.measures} yet gets a row"
            continue
        assert row is not None
        assert row.measures == measures
        assert row.fields == expected_fields(state, agency)
        assert set(row.fields) <= set(agency.fields)
        assert row.exemptions == [e for e in state.exemptions if e.measure in measures]
        assert (row.listing_id, row.version, row.status) == ("L-1", state.envelope.version, state.status)


@FAST
@given(state=listings())
def test_views_of_lists_exactly_the_entitled_agencies(state: ListingState) -> None:
    rows = views_of(state, POLICY)
    assert set(rows) == {a for a in AGENCIES if enforced(state, a)}
    assert all(row == project(state, a, POLICY) for a, row in rows.items())


@FAST
@given(state=listings())
def test_issue_sends_each_entitled_agency_its_row_and_others_nothing(state: ListingState) -> None:
    for agency in AGENCIES:
        change = view_change(None, state, agency, POLICY, AT)
        if not enforced(state, agency):
            assert change is None
            continue
        assert change is not None
        assert (change.op, change.view_agency) == ("upsert", agency)
        assert ViewRow.from_change(change) == project(state, agency, POLICY)


@FAST
@given(state=listings(), measures=st.lists(st.sampled_from(MEASURES), min_size=1, max_size=3, unique=True))
def test_an_upsert_is_the_upsert_of_the_projected_row_field_for_field(
    state: ListingState, measures: list[str]
) -> None:
    """`view_change` builds an upsert without the row: it must be the very one `upsert_change` makes
    of `project`'s row (what the reconciler's repairs send), envelope and reason included."""
    after = apply(state, ListingCorrected, reason="r", measures=measures)
    for before, now in ((None, state), (state, after)):
        for agency in AGENCIES:
            change = view_change(before, now, agency, POLICY, AT)
            row = project(now, agency, POLICY)
            if row is None or change is None:
                assert row is None and (change is None or change.op == "delete")
                continue
            assert change == upsert_change(row, change.envelope, agency, change.reason)
            assert change.reason == ("issued" if before is None else f"version {now.envelope.version}")
            assert change.envelope.listing_id == row.listing_id and change.envelope.version == row.version


@FAST
@given(state=listings(), measures=st.lists(st.sampled_from(MEASURES), min_size=1, max_size=3, unique=True))
def test_a_correction_deletes_exactly_where_entitlement_ends(
    state: ListingState, measures: list[str]
) -> None:
    after = apply(state, ListingCorrected, reason="r", measures=measures)
    for agency in AGENCIES:
        change = view_change(state, after, agency, POLICY, AT)
        was, still = bool(enforced(state, agency)), bool(enforced(after, agency))
        if not was and not still:
            assert change is None, f"{agency} was never entitled yet hears of {measures}"
        elif still:
            assert change is not None and change.op == "upsert"
            assert ViewRow.from_change(change) == project(after, agency, POLICY)
        else:
            assert change is not None
            assert (change.op, change.status, change.measures, change.fields) == (
                "delete",
                "withdrawn",
                [],
                {},
            )


@FAST
@given(state=listings(), ending=st.sampled_from(["revoked", "expired"]))
def test_an_ended_listing_is_deleted_from_every_view_that_held_it(state: ListingState, ending: str) -> None:
    if ending == "revoked":
        after = apply(state, ListingRevoked, reason=RevocationReason.MISLISTING, note="wrong")
    else:
        after = apply(state, ListingExpired, expired_at=AT)
    for agency in AGENCIES:
        change = view_change(state, after, agency, POLICY, AT)
        if not enforced(state, agency):
            assert change is None
            continue
        assert change is not None
        assert (change.op, change.status, change.measures, change.fields) == ("delete", ending, [], {})
        assert ending.removesuffix("d") in change.reason
        assert project(after, agency, POLICY) is None


def _flight_banned() -> ListingState:
    return evolve(
        None,
        ListingIssued(
            envelope=envelope(1),
            subject_ref="s-1",
            subject_kind="person",
            display_name="Y* H**",
            display_id="420***12",
            category="judgment_default",
            measures=["flight_ban", "rail_ban"],
            legal_basis="basis",
            severity="serious",
            case_ref="case-1",
            details={"amount_owed": "1000"},
            notice_served_at=T0,
            effective_from=T0,
            expires_at=T0 + timedelta(days=365),
        ),
    )


def test_a_delete_is_sent_once_and_a_regained_entitlement_is_sent_again() -> None:
    issued = _flight_banned()
    dropped = apply(issued, ListingCorrected, reason="r", measures=["rail_ban"])
    renamed = apply(dropped, ListingCorrected, reason="r", display_name="Z*")
    regained = apply(renamed, ListingCorrected, reason="r", measures=["rail_ban", "flight_ban"])
    changes = [
        view_change(before, after, "civil-aviation", POLICY, AT)
        for before, after in [(issued, dropped), (dropped, renamed), (renamed, regained)]
    ]
    assert [c.op if c else None for c in changes] == ["delete", None, "upsert"]
    assert changes[2] is not None and changes[2].fields["display_name"] == "Z*"
    railway = view_change(dropped, renamed, "railway", POLICY, AT)
    assert railway is not None and railway.op == "upsert"


def test_view_change_ids_are_deterministic_and_distinct() -> None:
    issued = _flight_banned()
    corrected = apply(issued, ListingCorrected, reason="r", display_name="Z*")
    first = view_change(issued, corrected, "railway", POLICY, AT)
    again = view_change(issued, corrected, "railway", POLICY, AT)
    assert first is not None and first == again
    assert first.envelope.event_id == view_event_id("L-1", 2, "railway")
    keys = [(lid, v, a) for lid in ("L-1", "L-2") for v in (1, 2) for a in ("railway", "civil-aviation")]
    assert len({view_event_id(*key) for key in keys}) == len(keys)


@given(listing_id=st.text(), version=st.integers(min_value=0, max_value=2**63), agency=st.text())
def test_view_change_ids_are_the_uuid5_of_listing_version_and_agency(
    listing_id: str, version: int, agency: str
) -> None:
    """The ids are part of the contract: written out by hand, they must stay `uuid5`'s, byte for byte."""
    expected = str(uuid.uuid5(VIEW_NAMESPACE, f"{listing_id}:{version}:{agency}"))
    assert view_event_id(listing_id, version, agency) == expected
    assert view_event_id("L-1", 2, "railway") == "f4127362-9b7b-5436-8c5e-c33ab80d02a8"


@FAST
@given(state=listings(), extra=st.lists(st.sampled_from(["details.nowhere", "nothing", "subject_ref"])))
def test_entitled_fields_are_sorted_and_ignore_names_no_listing_has(
    state: ListingState, extra: list[str]
) -> None:
    for agency in POLICY.agencies:
        fields = entitled_fields(state, [*agency.fields, *extra])
        assert fields == expected_fields(state, agency) and list(fields) == sorted(fields)


def test_disputed_listings_are_flagged_in_every_view() -> None:
    disputed = apply(
        _flight_banned(), ObjectionFiled, objection_id="o", kind="objection", grounds="g", due_at=AT
    )
    for agency in ("civil-aviation", "railway"):
        change = view_change(_flight_banned(), disputed, agency, POLICY, AT)
        assert change is not None and change.status == "disputed"
