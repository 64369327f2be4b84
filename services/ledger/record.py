"""What the ledger's two Faust tables hold, as bytes.

`listings`: per listing id, its current `ListingState` and the agencies that have ever
been sent a row of it (so that, re-stating a listing after a crash, the ledger knows
who may still hold a row it must delete). `held`: per listing id, the messages that
arrived before the version they follow, kept until the gap fills.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from services.core import serde
from services.core.events import ListingState


@dataclass(frozen=True)
class Entry:
    """A listing as the ledger keeps it."""

    state: ListingState
    ever: frozenset[str]

    def encode(self) -> bytes:
        return ",".join(sorted(self.ever)).encode() + b"\n" + serde.encode(self.state)

    @classmethod
    def decode(cls, data: bytes | None) -> Entry | None:
        if data is None:
            return None
        agencies, _, state = data.partition(b"\n")
        decoded = serde.decode(state, "ledger table")
        assert isinstance(decoded, ListingState)
        return cls(decoded, frozenset(a for a in agencies.decode().split(",") if a))


@dataclass(frozen=True)
class Inbound:
    """One consumed message, with everything needed to process it again later."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    payload: bytes | None
    timestamp: datetime

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


def encode_held(held: list[Inbound]) -> bytes:
    return json.dumps([_held_item(m) for m in held]).encode()


def decode_held(data: bytes | None) -> list[Inbound]:
    if not data:
        return []
    return [_inbound(item) for item in json.loads(data)]


def _held_item(msg: Inbound) -> dict[str, object]:
    return {
        "topic": msg.topic,
        "partition": msg.partition,
        "offset": msg.offset,
        "key": _b64(msg.key),
        "payload": _b64(msg.payload),
        "timestamp": msg.timestamp.isoformat(),
    }


def _inbound(item: dict[str, object]) -> Inbound:
    return Inbound(
        topic=str(item["topic"]),
        partition=int(str(item["partition"])),
        offset=int(str(item["offset"])),
        key=_unb64(item["key"]),
        payload=_unb64(item["payload"]),
        timestamp=datetime.fromisoformat(str(item["timestamp"])),
    )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: object) -> bytes | None:
    return None if text is None else base64.b64decode(str(text))
