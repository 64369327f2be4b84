"""What the ledger's two Faust tables hold, as bytes.

`listings`: per listing id, its current `ListingState`, the agencies that have ever
been sent a row of it (so that, re-stating a listing after a crash, the ledger knows
who may still hold a row it must delete) and where each applied event was read (so
that the ledger tells its own re-reading of a message after a crash, at the same
position, from a replay of it written again elsewhere). `held`: per listing id, the messages that
arrived before the version they follow, kept until the gap fills.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from services.core import serde
from services.core.events import ListingState
from services.core.position import Position

_HEADER = json.JSONEncoder(separators=(",", ":"))  # `json.dumps` with separators makes one each call


@dataclass(frozen=True)
class Entry:
    """A listing as the ledger keeps it; `read_at[i]` is where `state.event_ids[i]` was read."""

    state: ListingState
    ever: frozenset[str]
    read_at: tuple[Position, ...] = ()

    def read_from(self, event_id: str) -> Position | None:
        """Where the applied event `event_id` was read; None if unknown (an entry of an older ledger)."""
        ids = self.state.event_ids
        if event_id not in ids or len(self.read_at) != len(ids):
            return None
        return self.read_at[ids.index(event_id)]

    @cached_property
    def state_bytes(self) -> bytes:
        """The state's Avro encoding, made once: the table entry and the `ledger` record share it."""
        return serde.encode(self.state)

    def encode(self) -> bytes:
        header = {"ever": sorted(self.ever), "read_at": [list(p) for p in self.read_at]}
        return _HEADER.encode(header).encode() + b"\n" + self.state_bytes

    @classmethod
    def decode(cls, data: bytes | None) -> Entry | None:
        if data is None:
            return None
        header, _, state = data.partition(b"\n")
        decoded = serde.decode(state, "ledger table")
        assert isinstance(decoded, ListingState)
        if not header.startswith(b"{"):  # written before positions were kept: agencies only
            return cls(decoded, frozenset(a for a in header.decode().split(",") if a))
        fields = json.loads(header)
        read_at = tuple(Position(str(t), int(p), int(o)) for t, p, o in fields["read_at"])
        return cls(decoded, frozenset(fields["ever"]), read_at)


class DecodedEntries:
    """The entries of the listings read or written last, decoded once: a listing's next event
    (a correction, a revocation, an exemption) finds its entry here instead of decoding it again
    (~28 µs for a listing of a few versions: a tenth of a worker's time on a stream of corrections).

    Each is kept with the bytes it was decoded from and served only for bytes equal to them, so it
    can never be stale: whatever wrote the table (this worker, a recovery, another owner before a
    rebalance), other bytes are decoded afresh. At most `most` are kept, and at most `most_bytes` of
    their encodings (an entry grows with its listing's history; decoded, it takes ~7 times its
    bytes): the oldest written go first."""

    def __init__(self, most: int = 4096, most_bytes: int = 4 << 20) -> None:
        self.most, self.most_bytes = most, most_bytes
        self._kept: dict[bytes, tuple[bytes, Entry]] = {}
        self._bytes = 0

    def decode(self, key: bytes, data: bytes | None) -> Entry | None:
        """`Entry.decode(data)`, the stored entry of `key`."""
        if data is None:
            return None
        kept = self._kept.get(key)
        if kept is not None and kept[0] == data:
            return kept[1]
        entry = Entry.decode(data)
        assert entry is not None
        self.remember(key, data, entry)
        return entry

    def remember(self, key: bytes, data: bytes, entry: Entry) -> None:
        """`entry`, just written to the table of `key` as `data` (its `encode()`)."""
        self._forget(key)
        self._kept[key] = (data, entry)
        self._bytes += len(data)
        while self._kept and (len(self._kept) > self.most or self._bytes > self.most_bytes):
            self._forget(next(iter(self._kept)))

    def _forget(self, key: bytes) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None:
            self._bytes -= len(kept[0])

    def __len__(self) -> int:
        return len(self._kept)


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
    def position(self) -> Position:
        return Position(self.topic, self.partition, self.offset)

    def to_json(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": _b64(self.key),
            "payload": _b64(self.payload),
            "timestamp": self.timestamp.isoformat(),
        }

    @classmethod
    def from_json(cls, item: dict[str, object]) -> Inbound:
        return cls(
            topic=str(item["topic"]),
            partition=int(str(item["partition"])),
            offset=int(str(item["offset"])),
            key=_unb64(item["key"]),
            payload=_unb64(item["payload"]),
            timestamp=datetime.fromisoformat(str(item["timestamp"])),
        )


def encode_held(held: list[Inbound]) -> bytes:
    return json.dumps([m.to_json() for m in held]).encode()


def decode_held(data: bytes | None) -> list[Inbound]:
    if not data:
        return []
    return [Inbound.from_json(item) for item in json.loads(data)]


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: object) -> bytes | None:
    return None if text is None else base64.b64decode(str(text))
