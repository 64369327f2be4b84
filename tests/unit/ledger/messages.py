"""The deployment the ledger's unit tests decide in, and its messages as the worker consumes them."""

from __future__ import annotations

import itertools

from services.core.events import Event
from services.core.partitioner import partition_of
from services.core.serde import encode
from services.core.topics import Topics
from services.ledger.record import Inbound
from tests.support.factory import T0

TOPICS = Topics("t.")
PARTITIONS = 3
_offsets = itertools.count()


def inbound(
    event: Event,
    topic: str | None = None,
    key: str | None = None,
    partition: int | None = None,
    payload: bytes | None = None,
) -> Inbound:
    """`event` as read from its agency's topic (or `topic`), keyed by its listing (or `key`), in the
    key's partition (or `partition`), at a fresh offset; `payload`: other bytes in its place."""
    env = event.envelope
    keyed = (key or env.listing_id).encode()
    return Inbound(
        topic=topic or TOPICS.listings(env.agency),
        partition=partition_of(keyed, PARTITIONS) if partition is None else partition,
        offset=next(_offsets),
        key=keyed,
        payload=encode(event) if payload is None else payload,
        timestamp=T0,
    )
