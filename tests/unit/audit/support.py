"""Replayed events without a broker: sealed by Ledgerbook, encoded and decoded as a replay would."""

from __future__ import annotations

from services.audit.replay import Replayed
from services.core.events import Event
from services.core.position import Position
from services.core.serde import decode_full, encode


def replayed(event: Event, topic: str = "listings.court", partition: int = 0, offset: int = 0) -> Replayed:
    return Replayed(decode_full(encode(event), topic, partition, offset), Position(topic, partition, offset))
