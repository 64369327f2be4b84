"""Verification without a broker: each kind of broken event or link is named, and nothing else."""

from __future__ import annotations

from pathlib import Path

from services.audit.verify import Link, chain_breaks, check_event
from services.core.position import Position
from services.core.sealing import seal
from tests.support.factory import Ledgerbook, policy_with_keys
from tests.unit.audit.support import replayed


def link(version: int, hash_: str, prev: str, offset: int, event_id: str = "") -> Link:
    return Link(version, hash_, prev, event_id or f"e{offset}", Position("listings.court", 0, offset))


def codes(links: list[Link]) -> list[tuple[int, str]]:
    broken = chain_breaks("L", links)
    return [(b.position.offset, b.code) for b in broken]


def test_an_intact_chain_in_any_read_order_has_no_breaks() -> None:
    chain = [link(1, "h1", "", 0), link(2, "h2", "h1", 1), link(3, "h3", "h2", 2)]
    assert codes(list(reversed(chain))) == []


def test_gaps_forks_and_relinks_are_located() -> None:
    assert codes([link(1, "h1", "", 0), link(3, "h3", "h2", 1)]) == [(1, "version_gap")]
    assert codes([link(1, "h1", "", 0), link(2, "h2", "h1", 1), link(2, "h2x", "h1", 2)]) == [(2, "fork")]
    assert codes([link(1, "h1", "", 0), link(2, "h2", "hX", 1)]) == [(1, "broken_link")]
    assert codes([link(1, "h1", "h0", 0)]) == [(0, "broken_link")]
    assert codes([link(0, "h0", "", 0)]) == [(0, "bad_version")]


def test_an_exact_copy_of_an_event_is_reported_as_a_replay_where_the_copy_sits() -> None:
    (replay,) = chain_breaks("L", [link(1, "h1", "", 5, "e"), link(1, "h1", "", 0, "e")])
    assert (replay.code, replay.position.offset, replay.version) == ("replay", 5, 1)
    assert "listings.court[0]@0" in replay.reason and "harmless" not in replay.reason


def test_check_event_names_wrong_topic_bad_hash_and_bad_signature(tmp_path: Path) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    book = Ledgerbook(keystore)
    good = book.issue("L-1", agency="court")
    assert check_event(replayed(good), "court", policy) is None
    wrong = check_event(replayed(good), "tax-bureau", policy)
    assert wrong is not None and (wrong.code, wrong.listing, wrong.version) == ("wrong_topic", "L-1", 1)
    altered = good.model_copy(update={"envelope": good.envelope.model_copy(update={"agency": "court "})})
    bad_hash = check_event(replayed(altered), "court ", policy)
    assert bad_hash is not None and bad_hash.code == "bad_hash"
    forged = seal(good, "", keystore.private("railway"))
    bad_signature = check_event(replayed(forged), "court", policy)
    assert bad_signature is not None and bad_signature.code == "bad_signature"
