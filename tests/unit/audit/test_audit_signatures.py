"""Signatures checked in worker processes: each checked, answered as a check in turn answers it, in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.audit import signatures
from services.audit.signatures import Fault, SignatureChecks
from services.core.sealing import SignatureClaim, check_seal, claim_of, seal
from tests.support.factory import Ledgerbook, policy_with_keys
from tests.unit.audit.support import replayed

FORGED_EVERY = 7


@pytest.mark.parametrize("count", [0, 1, signatures.CHUNK, signatures.CHUNK * (signatures.IN_FLIGHT + 3) + 5])
def test_every_claim_is_answered_in_order_as_a_check_in_turn_answers_it(tmp_path: Path, count: int) -> None:
    policy, keystore = policy_with_keys(tmp_path)
    book, key = Ledgerbook(keystore), policy.agency_by_id["court"].public_key
    template = book.issue("L-1")
    forged = replayed(seal(template, "", keystore.private("railway")))
    genuine = replayed(template)
    items = [forged if n % FORGED_EVERY == 0 else genuine for n in range(count)]
    heard: list[tuple[int, Fault]] = []
    with SignatureChecks[int](lambda n, fault: heard.append((n, fault))) as checks:
        for n, item in enumerate(items):
            claim = claim_of(item.decoded, key)
            assert isinstance(claim, SignatureClaim)
            checks.add(n, claim)
        checks.finish()
    assert heard == [(n, check_seal(item.decoded, key)) for n, item in enumerate(items)]
    assert sum(fault is not None for _, fault in heard) == len(range(0, count, FORGED_EVERY))
    assert all(fault in (None, ("bad_signature", "the signature is not court's: forged or unsigned"))
               for _, fault in heard)  # fmt: skip
