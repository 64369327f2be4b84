"""The ledger's decisions, message by message, without a broker: `handler.handle` directly.

Each test feeds sealed messages (as the publisher writes them) and checks the new entry,
the held messages and everything the ledger would publish: state, view changes, refusals.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.events import Event, ListingEvent, ListingState, Rejected, ViewChanged
from services.core.listing import evolve
from services.core.partitioner import partition_of
from services.core.policy import Policy
from services.core.sealing import seal
from services.core.serde import encode
from services.core.topics import BACKBONE
from services.core.views import project, view_change
from services.ledger.expiry import expiry_of
from services.ledger.handler import Context, Outbound, affected, give_up, handle
from services.ledger.record import DecodedEntries, Entry, Inbound
from tests.support.factory import T0, Ledgerbook
from tests.unit.ledger.messages import PARTITIONS, TOPICS, inbound


@pytest.fixture
def book(trusted: tuple[Policy, Ledgerbook]) -> Ledgerbook:
    return Ledgerbook(trusted[1].keystore)


class Ledger:
    """The tables of one worker, fed message by message through `handle`."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.entries: dict[str, Entry] = {}
        self.held: dict[str, list[Inbound]] = {}
        self.out: list[Outbound] = []

    def feed(self, *messages: Inbound | Event) -> list[Outbound]:
        sent: list[Outbound] = []
        for item in messages:
            msg = item if isinstance(item, Inbound) else inbound(item)
            key = (msg.key or b"").decode()
            outcome = handle(msg, self.entries.get(key), self.held.get(key, []), self.ctx)
            if outcome.entry is not None:
                self.entries[key] = outcome.entry
            self.held[key] = outcome.held
            sent += outcome.out
        self.out += sent
        return sent

    def state(self, listing_id: str) -> ListingState:
        return self.entries[listing_id].state


def views(out: Iterable[Outbound]) -> dict[tuple[str, int], ViewChanged]:
    """(agency, version) -> the view change sent."""
    return {
        (o.event.view_agency, o.event.envelope.version): o.event
        for o in out
        if isinstance(o.event, ViewChanged)
    }


def rejections(out: Iterable[Outbound]) -> list[Rejected]:
    return [o.event for o in out if isinstance(o.event, Rejected)]


def test_an_issue_publishes_the_state_and_an_entitled_upsert_per_enforcing_agency(
    ctx: Context, book: Ledgerbook
) -> None:
    ledger = Ledger(ctx)
    out = ledger.feed(book.issue("L-1", measures=("flight_ban", "high_consumption")))
    state = ledger.state("L-1")
    assert out[0] == Outbound(TOPICS.ledger, "L-1", state)
    sent = views(out)
    assert set(sent) == {("civil-aviation", 1), ("railway", 1), ("court", 1)}
    for (agency, _), change in sent.items():
        assert change.op == "upsert"
        assert set(change.fields) <= set(ctx.policy.agency_by_id[agency].fields)
        assert change.measures == ctx.policy.enforced_by(agency, state.measures)
    assert {o.topic for o in out[1:]} == {TOPICS.views(a) for a in ("civil-aviation", "railway", "court")}
    assert ledger.entries["L-1"].ever == {"civil-aviation", "railway", "court"}


def test_a_correction_that_drops_a_measure_deletes_the_listing_from_that_agency(
    ctx: Context, book: Ledgerbook
) -> None:
    ledger = Ledger(ctx)
    ledger.feed(book.issue("L-1"))
    sent = views(ledger.feed(book.correct("L-1", measures=["rail_ban"])))
    assert sent[("civil-aviation", 2)].op == "delete"
    assert sent[("railway", 2)].op == "upsert"
    assert set(sent) == {("civil-aviation", 2), ("railway", 2)}


def test_a_revocation_deletes_the_listing_everywhere_it_was(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    ledger.feed(book.issue("L-1"))
    sent = views(ledger.feed(book.revoke("L-1")))
    assert {k: v.op for k, v in sent.items()} == {("civil-aviation", 2): "delete", ("railway", 2): "delete"}
    assert ledger.state("L-1").status == "revoked"


def test_an_exemption_reaches_the_agency_that_enforces_its_measure(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    ledger.feed(book.issue("L-1"))
    sent = views(ledger.feed(book.exempt("L-1", "flight_ban")))
    assert [e.measure for e in sent[("civil-aviation", 2)].exemptions] == ["flight_ban"]
    assert sent[("railway", 2)].exemptions == []


def test_a_message_read_again_where_it_was_applied_restates_the_latest_version_byte_for_byte(
    ctx: Context, book: Ledgerbook
) -> None:
    ledger = Ledger(ctx)
    issued = inbound(book.issue("L-1"))
    ledger.feed(issued)
    first = ledger.feed(book.correct("L-1", measures=["rail_ban"]))
    entry = ledger.entries["L-1"]
    again = ledger.feed(issued)  # re-read after a crash: its effect is already in the table
    assert ledger.entries["L-1"] == entry
    assert sorted(encode(o.event) for o in again) == sorted(encode(o.event) for o in first)
    assert views(again)[("civil-aviation", 2)].op == "delete"
    assert rejections(again) == []


def test_an_exact_replay_elsewhere_in_the_log_is_rejected_as_a_replay_and_changes_nothing(
    ctx: Context, book: Ledgerbook
) -> None:
    ledger = Ledger(ctx)
    issued = inbound(book.issue("L-1"))
    ledger.feed(issued, book.revoke("L-1"))
    entry = ledger.entries["L-1"]
    replay = Inbound(issued.topic, issued.partition, issued.offset + 1000, issued.key, issued.payload, T0)
    out = ledger.feed(replay)
    (refusal,) = rejections(out)
    assert len(out) == 1 and ledger.entries["L-1"] == entry
    assert refusal.reason_code == "replay" and refusal.offset == replay.offset
    assert f"applied from {issued.topic}[{issued.partition}]@{issued.offset}" in refusal.reason
    assert rejections(ledger.feed(replay)) == [refusal]  # read again after a crash: the same record


def test_an_event_on_another_partition_is_refused_even_if_byte_identical_to_an_applied_one(
    ctx: Context, book: Ledgerbook
) -> None:
    """The attack of the issue: a revoked listing's issue, written again into another partition,
    would meet no state there and start the listing over."""
    ledger = Ledger(ctx)
    issued = book.issue("L-1")
    ledger.feed(issued, book.revoke("L-1"))
    own = partition_of(b"L-1", PARTITIONS)
    for elsewhere in sorted(set(range(PARTITIONS)) - {own}):
        fresh = Ledger(ctx)  # the other partition's table holds nothing of L-1
        (refusal,) = rejections(fresh.feed(inbound(issued, partition=elsewhere)))
        assert refusal.reason_code == "wrong_partition" and f"partition {own} of 3" in refusal.reason
        assert fresh.entries == {} and fresh.out == [fresh.out[0]]
    assert ledger.state("L-1").status == "revoked"


def test_an_older_version_after_a_revocation_is_refused(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    ledger.feed(book.issue("L-1"), book.revoke("L-1"))
    stale = book.correct("L-1", legal_basis="back to life")
    stale_v2 = seal(stale.model_copy(update={"envelope": stale.envelope.model_copy(update={"version": 2})}),
                    ledger.entries["L-1"].state.envelope.hash, book.keystore.private("court"))  # fmt: skip
    codes = [r.reason_code for r in rejections(ledger.feed(book.issue("L-1"), stale_v2))]
    assert codes == ["listing_exists", "version_conflict"]
    assert ledger.state("L-1").status == "revoked"


def test_held_messages_older_than_the_limit_are_refused_as_gaps_never_filled(
    ctx: Context, book: Ledgerbook
) -> None:
    ledger = Ledger(ctx)
    book.issue("L-1")
    book.correct("L-1", legal_basis="lost")
    revoked = inbound(book.revoke("L-1"))
    ledger.feed(revoked)
    limit = timedelta(minutes=5)
    assert give_up(ledger.held["L-1"], T0 + timedelta(minutes=4), limit, ctx).out == []
    outcome = give_up(ledger.held["L-1"], T0 + timedelta(minutes=6), limit, ctx)
    (refusal,) = rejections(outcome.out)
    assert outcome.held == [] and refusal.reason_code == "gap_never_filled"
    env = refusal.envelope
    assert (refusal.offset, env.version, env.listing_id) == (revoked.offset, 3, "L-1")
    assert "held 360 s" in refusal.reason


def test_a_version_gap_is_held_and_applied_in_order_when_it_fills(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    issued, corrected, revoked = book.issue("L-1"), book.correct("L-1", legal_basis="new"), book.revoke("L-1")
    assert ledger.feed(revoked) == []
    ledger.feed(issued)
    assert ledger.state("L-1").envelope.version == 1 and len(ledger.held["L-1"]) == 1
    out = ledger.feed(corrected)
    assert ledger.held["L-1"] == []
    assert ledger.state("L-1").status == "revoked"
    assert [o.event.envelope.version for o in out if o.topic == TOPICS.ledger] == [2, 3]


def test_a_change_before_its_listing_is_issued_waits_for_it(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    issued, revoked = book.issue("L-1"), book.revoke("L-1")
    assert ledger.feed(revoked) == []
    assert "L-1" not in ledger.entries and len(ledger.held["L-1"]) == 1
    ledger.feed(issued)
    assert ledger.state("L-1").status == "revoked"


def test_a_held_message_read_twice_is_held_once(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    book.issue("L-1")
    msg = inbound(book.revoke("L-1"))
    ledger.feed(msg, msg)
    assert len(ledger.held["L-1"]) == 1


def test_of_two_rival_versions_the_first_read_applies_and_the_other_is_refused(
    ctx: Context, book: Ledgerbook
) -> None:
    """The rule the audit's replica shares (core.fold): both held, judged in the order they arrived."""
    ledger = Ledger(ctx)
    issued = book.issue("L-1")
    head = book.heads["L-1"]
    corrected = book.correct("L-1", legal_basis="new")
    book.heads["L-1"] = head
    revoked = book.revoke("L-1")  # also version 2, on the same head
    ledger.feed(corrected, revoked)
    assert len(ledger.held["L-1"]) == 2
    out = ledger.feed(issued)
    assert ledger.state("L-1").event_ids == [issued.envelope.event_id, corrected.envelope.event_id]
    assert [r.reason_code for r in rejections(out)] == ["version_conflict"]
    assert ledger.held["L-1"] == []


def test_undecodable_bytes_are_rejected_with_their_payload_and_change_nothing(ctx: Context) -> None:
    ledger = Ledger(ctx)
    bad = Inbound(TOPICS.listings("court"), 1, 7, b"L-1", b"\xc3\x01garbage", T0)
    (refusal,) = rejections(ledger.feed(bad))
    assert (refusal.reason_code, refusal.payload, refusal.offset, refusal.partition) == (
        "undecodable", b"\xc3\x01garbage", 7, 1)  # fmt: skip
    assert "L-1" not in ledger.entries


@pytest.mark.parametrize(
    ("code", "tamper"),
    [
        ("bad_signature", lambda e, book: seal(e, "", book.keystore.private("tax-bureau"))),
        ("bad_hash", lambda e, book: e.model_copy(update={"case_ref": "changed after sealing"})),
    ],
)
def test_a_forged_or_altered_event_is_rejected(
    ctx: Context, book: Ledgerbook, code: str, tamper: object
) -> None:
    ledger = Ledger(ctx)
    forged = tamper(book.issue("L-1"), book)  # type: ignore[operator]
    assert [r.reason_code for r in rejections(ledger.feed(forged))] == [code]
    assert "L-1" not in ledger.entries


def test_an_event_on_another_agencys_topic_or_under_another_key_is_rejected(
    ctx: Context, book: Ledgerbook
) -> None:
    ledger = Ledger(ctx)
    issued = book.issue("L-1")
    out = ledger.feed(inbound(issued, topic=TOPICS.listings("tax-bureau")), inbound(issued, key="L-2"))
    assert [r.reason_code for r in rejections(out)] == ["wrong_topic", "wrong_key"]
    assert ledger.entries == {}


def test_order_and_authority_refusals_go_to_rejected_and_processing_goes_on(
    ctx: Context, book: Ledgerbook
) -> None:
    ledger = Ledger(ctx)
    ledger.feed(book.issue("L-1", agency="tax-bureau", measures=("financing_restriction",)))
    stranger = book.correct("L-1", agency="market-regulator", legal_basis="not mine")
    book.heads["L-1"] = (1, ledger.state("L-1").envelope.hash)
    out = ledger.feed(stranger, book.revoke("L-1", agency="tax-bureau"))
    assert [r.reason_code for r in rejections(out)] == ["not_issuer"]
    assert ledger.state("L-1").status == "revoked"


def test_content_the_rules_forbid_is_refused_even_when_signed(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    out = ledger.feed(book.issue("L-1", severity="minor"))  # flight_ban needs a serious offence
    assert [r.reason_code for r in rejections(out)] == ["severity_too_low"]
    assert "L-1" not in ledger.entries


def test_a_held_message_refused_when_its_turn_comes_goes_to_rejected(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    issued, corrected = book.issue("L-1"), book.correct("L-1", legal_basis="new")
    unlinked = seal(book.revoke("L-1"), "not-the-hash-of-version-2", book.keystore.private("court"))
    ledger.feed(unlinked, issued)
    out = ledger.feed(corrected)
    assert [r.reason_code for r in rejections(out)] == ["broken_chain"]
    assert ledger.state("L-1").envelope.version == 2
    assert ledger.held["L-1"] == []


def test_a_restatement_deletes_from_every_agency_that_ever_held_a_row(ctx: Context, book: Ledgerbook) -> None:
    """A crash may have swallowed a delete sent versions ago; the restatement repeats it."""
    ledger = Ledger(ctx)
    issued = inbound(book.issue("L-1"))
    ledger.feed(issued, book.correct("L-1", measures=["rail_ban"]), book.exempt("L-1", "rail_ban"))
    sent = views(ledger.feed(issued))  # re-read where it was applied
    assert {k: v.op for k, v in sent.items()} == {("civil-aviation", 3): "delete", ("railway", 3): "upsert"}


def test_the_backbone_expiry_ends_the_listing_for_every_copy(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    ledger.feed(book.issue("L-1"))
    state = ledger.state("L-1")
    expired = expiry_of(state, T0 + timedelta(days=400), book.keystore.private(BACKBONE))
    sent = views(ledger.feed(expired))
    assert ledger.state("L-1").status == "expired"
    assert {k: v.op for k, v in sent.items()} == {("civil-aviation", 2): "delete", ("railway", 2): "delete"}
    assert (
        expired.envelope.event_id == expiry_of(state, T0, book.keystore.private(BACKBONE)).envelope.event_id
    )


def test_only_the_backbone_may_expire_a_listing(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    ledger.feed(book.issue("L-1"))
    forged = expiry_of(ledger.state("L-1"), T0, book.keystore.private("court"))
    assert [r.reason_code for r in rejections(ledger.feed(forged))] == ["bad_signature"]


def test_entries_survive_their_table_encoding(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    ledger.feed(book.issue("L-1"), book.revoke("L-1"))
    entry = ledger.entries["L-1"]
    assert len(entry.read_at) == 2
    assert Entry.decode(entry.encode()) == entry
    assert Entry.decode(None) is None
    older = b"civil-aviation,railway\n" + encode(entry.state)  # an entry written before positions
    assert Entry.decode(older) == Entry(entry.state, entry.ever)


def test_a_decoded_entry_is_served_only_for_the_bytes_it_was_decoded_from(
    ctx: Context, book: Ledgerbook
) -> None:
    ledger = Ledger(ctx)
    ledger.feed(book.issue("L-1"))
    first = ledger.entries["L-1"]
    ledger.feed(book.correct("L-1", legal_basis="corrected"))
    second = ledger.entries["L-1"]
    entries = DecodedEntries(most=2)
    entries.remember(b"L-1", first.encode(), first)
    assert entries.decode(b"L-1", first.encode()) is first  # equal bytes: the entry kept
    assert entries.decode(b"L-1", second.encode()) == second  # the table changed: decoded afresh
    assert entries.decode(b"L-1", first.encode()) == first  # and back: never the stale one
    assert entries.decode(b"L-1", None) is None
    entries.remember(b"L-2", second.encode(), second)
    entries.remember(b"L-3", second.encode(), second)
    assert len(entries) == 2  # bounded: the oldest written went
    assert entries.decode(b"L-3", second.encode()) is second
    by_size = DecodedEntries(most_bytes=len(first.encode()) + len(second.encode()))
    for key in (b"L-1", b"L-2", b"L-3"):
        by_size.remember(key, second.encode(), second)
    assert len(by_size) == 1  # bounded by their bytes too: an entry grows with its history
    by_size.remember(b"L-4", b"x" * (by_size.most_bytes + 1), second)
    assert len(by_size) == 0  # one larger than the whole budget is not kept


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_order_and_any_duplicates_give_the_state_and_views_of_the_log(
    trusted: tuple[Policy, Ledgerbook], data: st.DataObject
) -> None:
    policy, base = trusted
    book = Ledgerbook(base.keystore)
    chain = [
        book.issue("L-1"),
        book.correct("L-1", measures=["rail_ban", "high_consumption"]),
        book.exempt("L-1", "rail_ban"),
        book.correct("L-1", measures=["flight_ban"]),
    ]
    if data.draw(st.booleans()):
        chain.append(book.revoke("L-1"))
    messages = [inbound(e) for e in chain]
    delivered = data.draw(
        st.permutations(messages + data.draw(st.lists(st.sampled_from(messages), max_size=4)))
    )
    ledger = Ledger(Context(policy, TOPICS, PARTITIONS))
    ledger.feed(*delivered)

    final = None
    for event in chain:
        final = evolve(final, event)  # type: ignore[arg-type]
    assert ledger.state("L-1") == final
    copies: dict[str, ViewChanged] = {}
    for o in ledger.out:
        if isinstance(o.event, ViewChanged):
            copies[o.event.view_agency] = o.event
    for agency in policy.enforcers:
        want = project(final, agency, policy)
        got = copies.get(agency)
        assert (got is not None and got.op == "upsert") == (want is not None)
        if want is not None and got is not None:
            assert got.envelope.version == want.version and got.fields == want.fields


def test_a_listing_id_that_is_not_printable_is_rejected(ctx: Context, book: Ledgerbook) -> None:
    ledger = Ledger(ctx)
    odd = book.issue("\x00position\x00listings.court:0")
    assert [r.reason_code for r in rejections(ledger.feed(odd))] == ["bad_listing_id"]
    assert ledger.entries == {}


@pytest.mark.parametrize("ending", ["correct", "revoke", "expire"])
def test_view_changes_are_asked_only_of_agencies_holding_a_row_before_or_after(
    ctx: Context, book: Ledgerbook, ending: str
) -> None:
    """`affected` names every enforcer `view_change` has a change for, in the same order: the ledger
    asks no other, so it must miss none (measures dropped, added, or the listing ended)."""
    measures = sorted(ctx.policy.measure_by_code)
    for first, second in itertools.product(measures, repeat=2):
        listing_id = f"A-{first}-{second}-{ending}"
        before = evolve(None, book.issue(listing_id, measures=(first,), severity="severe"))
        later: ListingEvent
        if ending == "correct":
            later = book.correct(listing_id, measures=[second])
        else:
            later = book.revoke(listing_id) if ending == "revoke" else book.expire(listing_id)
        after = evolve(before, later)
        for old in (None, before):
            at = after.envelope.recorded_at
            every = [a for a in ctx.enforcers if view_change(old, after, a, ctx.policy, at) is not None]
            assert affected(old, after, ctx) == every


def test_the_ledger_record_carries_the_bytes_of_the_table_entry_state(ctx: Context, book: Ledgerbook) -> None:
    """The new state is encoded once; what goes to `ledger` is exactly its encoding."""
    ledger = Ledger(ctx)
    ledger.feed(book.issue("L-1"))
    out = ledger.feed(book.correct("L-1", legal_basis="corrected basis"))
    state = ledger.state("L-1")
    assert out[0].encoded == encode(state) == ledger.entries["L-1"].state_bytes
    assert Entry.decode(ledger.entries["L-1"].encode()) == ledger.entries["L-1"]


def test_an_expiry_asked_again_after_a_restart_is_a_harmless_duplicate(
    ctx: Context, book: Ledgerbook
) -> None:
    """A worker restarted after publishing an expiry but before applying it asks for it again: a second
    `ListingExpired` with the same id, sealed at another time, at another offset. Once the first is
    applied, the second changes nothing, publishes no second decision and refuses nothing."""
    ledger = Ledger(ctx)
    ledger.feed(book.issue("L-1"))
    state, key = ledger.state("L-1"), book.keystore.private(BACKBONE)
    first, again = (
        expiry_of(state, T0 + timedelta(days=400), key),
        expiry_of(state, T0 + timedelta(days=401), key),
    )
    assert first.envelope.event_id == again.envelope.event_id and first != again
    ledger.feed(first)
    ended = ledger.state("L-1")
    out = ledger.feed(again)
    assert ledger.state("L-1") == ended
    assert out == []  # no refusal (no `replay` for operators to chase), no second decision
