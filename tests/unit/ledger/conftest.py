"""Fixtures of the ledger's unit tests: trusted agency keys, and the handler's context."""

from __future__ import annotations

import pytest

from services.core.policy import Policy
from services.ledger.handler import Context
from tests.support.factory import Ledgerbook, policy_with_keys
from tests.unit.ledger.messages import PARTITIONS, TOPICS


@pytest.fixture(scope="module")
def trusted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Policy, Ledgerbook]:
    """The repository's policy with fresh keys for every agency, and a book that signs with them."""
    policy, keystore = policy_with_keys(tmp_path_factory.mktemp("keys"))
    return policy, Ledgerbook(keystore)


@pytest.fixture
def ctx(trusted: tuple[Policy, Ledgerbook]) -> Context:
    return Context(trusted[0], TOPICS, PARTITIONS)
