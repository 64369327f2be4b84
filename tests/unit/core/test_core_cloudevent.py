"""The CloudEvents headers of every event type, read back by the official SDK's Kafka binding.

The broker-backed proof (real messages of the publisher, the ledger and a copy) is
tests/integration/test_cloudevents.py; here every event type and the naming rules.
"""

from __future__ import annotations

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from services.core.cloudevent import cloudevent_headers, event_type, source
from services.core.serde import decode, encode, registry
from tests.support.golden.samples import SAMPLES


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_event_type_reads_back_as_a_cloudevent(name: str) -> None:
    event = SAMPLES[name]
    headers = dict(cloudevent_headers(event, source("t1.", event.envelope.agency)))
    cloud = from_binary(KafkaMessage(headers, b"key", encode(event)), JSONFormat())
    writer = registry().writer(name)
    assert cloud.get_id() == event.envelope.event_id
    assert cloud.get_source() == f"urn:accord:t1:{event.envelope.agency}"
    assert cloud.get_type() == event_type(writer) and cloud.get_type().endswith(f".v{writer.version}")
    assert cloud.get_time() == event.envelope.occurred_at
    schema = f"urn:accord:schema:accord.{name}:v{writer.version}:{writer.fingerprint.hex()}"
    assert cloud.get_dataschema() == schema
    data = cloud.get_data()
    assert isinstance(data, bytes) and decode(data) == event


def test_types_are_reverse_dns_words_of_the_record_name_and_its_version() -> None:
    names = ("ListingIssued", "CopyApplied", "Rejected")
    types = {name: event_type(registry().writer(name)) for name in names}
    version = max(registry().versions)
    assert types == {
        "ListingIssued": f"cn.accord.listing.issued.v{version}",
        "CopyApplied": f"cn.accord.copy.applied.v{version}",
        "Rejected": f"cn.accord.rejected.v{version}",
    }


def test_a_source_names_the_deployment_when_it_has_a_namespace() -> None:
    assert source("", "court") == "urn:accord:court"
    assert source("prod.", "ledger") == "urn:accord:prod:ledger"
    assert source("a b/", "x") == "urn:accord:a%20b%2F:x"  # still one URN
