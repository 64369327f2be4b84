"""Name-based ids written out: they are part of the contract, so they must stay `uuid.uuid5`'s."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.core.commands import COMMAND_NAMESPACE, event_id_of, listing_id_of
from services.core.ids import name_id
from services.publisher.build import derived_id


@given(st.uuids(), st.text())
def test_a_name_id_is_the_uuid5_of_the_namespace_and_the_name(namespace: uuid.UUID, name: str) -> None:
    assert name_id(namespace, name) == str(uuid.uuid5(namespace, name))


def test_the_ids_a_command_derives_are_the_uuid5s_they_always_were() -> None:
    event_id = event_id_of("court", "import-ghij")
    assert event_id == str(uuid.uuid5(COMMAND_NAMESPACE, "event|court|import-ghij"))
    listing = str(uuid.uuid5(COMMAND_NAMESPACE, "listing|court|import-ghij"))
    assert listing_id_of("court", "import-ghij") == listing
    assert derived_id("objection", event_id) == str(uuid.uuid5(uuid.UUID(event_id), "objection"))
