"""An agency's publisher runs as that agency's own principal (issue 9's ACL plan): it writes its
own listing topic, reads `ledger` and `rejected` for the verdict, and can do nothing else.

On the secured session broker, in the package's namespace provisioned as `accord backbone up`
provisions it (tests/integration/ledger/harness.py), with the ledger ruling.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from services.core.crypto import AgencyKey
from services.core.errors import ConfigurationError, Forbidden
from services.core.kafka import consumer, end_offsets
from services.publisher.client import Publisher
from services.publisher.reader import LedgerReader
from services.publisher.state import LedgerBook
from tests.integration.publisher.conftest import WAIT, Backbone
from tests.support.prerequisites import missing
from tests.unit.publisher import samples
from tests.unit.publisher.samples import PSEUDONYM_KEY

COURT, POLICE = "court", "luoshan-police"


@pytest.fixture
def secured(backbone: Backbone) -> Backbone:
    if backbone.ledger.credentials is None:
        missing("the session broker does not authenticate: there are no agency principals")
    return backbone


def written(backbone: Backbone, topic: str) -> int:
    return sum(end_offsets(backbone.connection, [topic]).values())


def read_error(backbone: Backbone, agency: str, topic: str) -> KafkaError | None:
    """What `agency`'s principal gets when it subscribes to `topic` (in a group of its own, which
    it may use): None if it read records instead."""
    as_agency = backbone.ledger.connection_as(agency)
    reader = consumer(as_agency, as_agency.group("probe"))
    try:
        reader.subscribe([topic])
        for _ in range(30):
            msg = reader.poll(0.5)
            if msg is not None and msg.error() is not None:
                return msg.error()
            assert msg is None or msg.value() is None, f"{agency} read {topic}"
        return None
    finally:
        reader.close()


def test_the_courts_publisher_as_the_court_publishes_and_hears_the_ledgers_verdict(secured: Backbone) -> None:
    publisher = secured.publisher(agency=COURT)
    issued = publisher.issue(samples.issue())
    corrected = publisher.correct(samples.correct(issued.listing_id, 1, measures=["flight_ban"]))
    assert issued.status == "admitted" and corrected.status == "admitted" and corrected.version == 2
    state = publisher.current(issued.listing_id)  # read back from `ledger`, as the court
    assert state is not None and state.envelope.version == 2


def test_the_courts_principal_reads_no_other_agencys_listings(secured: Backbone) -> None:
    police = secured.publisher(agency=POLICE)  # something to read in the police's topic
    police.issue(samples.issue(agency=POLICE, category="public_security_risk", details={}))
    topic = secured.topics.listings(POLICE)
    assert written(secured, topic) >= 1
    error = read_error(secured, COURT, topic)
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # The publisher's own reader, pointed at it as the court, is told so (the topic is not even listed).
    reader = LedgerReader(secured.ledger.connection_as(COURT), [topic], LedgerBook({}), timeout=5.0)
    try:
        with pytest.raises(ConfigurationError, match=f"{COURT} may not read"):
            reader.catch_up()
    finally:
        reader.close()


def test_the_courts_publisher_refuses_anothers_command_clearly_and_writes_nothing(secured: Backbone) -> None:
    publisher = secured.publisher(agency=COURT)
    topic = secured.topics.listings(POLICE)
    before = written(secured, topic)
    police_command = samples.issue(agency=POLICE, category="public_security_risk", details={})
    with pytest.raises(Forbidden, match="acts for court only"):  # its key: refused before anything
        publisher.issue(police_command)
    # Misconfigured with the police's key but the court's principal, the broker's ACL still refuses.
    signer = AgencyKey(POLICE, secured.keystore.private(POLICE))
    mixed = Publisher(secured.ledger.connection_as(COURT), secured.topics, secured.policy, signer,
                      PSEUDONYM_KEY, timeout=WAIT, decision_wait=WAIT)  # fmt: skip
    secured.opened.append(mixed)
    with pytest.raises(ConfigurationError, match="may not write"):
        mixed.issue(police_command)
    assert written(secured, topic) == before
    assert publisher.issue(samples.issue()).status == "admitted"  # and its own still go through
