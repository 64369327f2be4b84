"""The demo's events are ones the ledger accepts: validly sealed, within the rules, in order, and
they reach exactly civil aviation and railway (the story depends on both, and on nobody else)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.core.listing import admit, evolve
from services.core.rules import check_event
from services.core.sealing import check_seal
from services.core.serde import decode_full, encode
from services.core.views import views_of
from services.demo import luoshan
from tests.support.factory import policy_with_keys


def test_the_marking_and_its_revocation_pass_every_check_of_the_ledger(tmp_path: Path) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    now = datetime.now(UTC)
    marking = luoshan.marking(keystore, b"demo-key", now)
    revocation = luoshan.admission(marking, keystore, now)
    key = policy.agency_by_id[luoshan.BUREAU].public_key
    for event in (marking, revocation):
        assert check_seal(decode_full(encode(event)), key) is None
    check_event(None, marking, policy)
    assert admit(None, marking, policy).action == "apply"
    state = evolve(None, marking)
    assert sorted(views_of(state, policy)) == sorted(luoshan.ENFORCERS)
    assert admit(state, revocation, policy).action == "apply"
    assert views_of(evolve(state, revocation), policy) == {}
