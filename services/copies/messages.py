"""What a copy sink publishes: pure functions over the contract.

Acknowledgement ids depend only on the copy and the input position, so a message
re-sent after a crash is recognisably the same message. (What a copy refuses to apply
is recorded by `core.rejections.rejected`, with the same property.)

A sink acknowledges every change it takes, so `Acknowledgements` writes an acknowledgement's
Avro bytes straight from its fields, no model built (`serde.encode` of a `holding` model costs
two validated models, a dump to a dict and a walk of the schema: the sink's largest cost per
change); it is bound to the layout of the current `CopyApplied` schema and checks itself
against `serde.encode` once, falling back to it if a schema change ever made the two differ.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache

from services.core import serde
from services.core.avrowriter import long_of as _long
from services.core.cloudevent import Encoded
from services.core.digest import Digest
from services.core.events import CopyApplied, CopyDigest, Envelope, Event, ViewChanged
from services.core.policy import Policy
from services.core.views import LIVE, ViewRow

log = logging.getLogger("accord.copy")
COPY_NAMESPACE = uuid.UUID("a5d3b0c2-41e8-4c0a-9a1f-5e7b3c2d9f10")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _id(*parts: object) -> str:
    """`uuid.uuid5(COPY_NAMESPACE, "a:b:…")`, spelt out: the same string at a third of the cost."""
    return _uuid5(hashlib.sha1(COPY_NAMESPACE.bytes + ":".join(str(p) for p in parts).encode()))


def _uuid5(named: hashlib._Hash) -> str:
    """The uuid5 text of a name's SHA-1 (`named`: the namespace's bytes and the name's, hashed)."""
    h = bytearray(named.digest()[:16])
    h[6], h[8] = (h[6] & 0x0F) | 0x50, (h[8] & 0x3F) | 0x80  # version 5, RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _envelope(event_id: str, agency: str, at: datetime, listing_id: str = "", version: int = 0) -> Envelope:
    """What the copy writes is its own report, decided and recorded at the same moment."""
    return Envelope(event_id=event_id, listing_id=listing_id, version=version, agency=agency,
                    occurred_at=at, recorded_at=at)  # fmt: skip


def applied(change: ViewChanged, partition: int, offset: int, agency: str, at: datetime) -> CopyApplied:
    """The acknowledgement that `agency`'s copy applied `change` (read at partition/offset)."""
    row_hash = ViewRow.from_change(change).row_hash() if change.op == "upsert" else ""
    return holding(
        change.envelope.listing_id, change.envelope.version, row_hash, partition, offset, agency, at
    )


def holding(
    listing_id: str, version: int, row_hash: str, partition: int, offset: int, agency: str, at: datetime
) -> CopyApplied:
    """The acknowledgement that, at partition/offset, `agency`'s copy holds the row hashing to
    `row_hash` at `version` (or, with "", no row: its deletion). It also answers a repair the ledger
    has overtaken: with what the copy holds."""
    return CopyApplied(
        envelope=_envelope(_id("applied", agency, partition, offset), agency, at, listing_id, version),
        copy_agency=agency,
        op="upsert" if row_hash else "delete",
        partition=partition,
        offset=offset,
        row_hash=row_hash,
        applied_at=at,
    )


class Acknowledgements:
    """The acknowledgements of one batch, `holding`'s bytes, all dated `at`: the batch is taken in
    one transaction, so that one moment is when the copy applied each of its changes. What every
    one of them repeats (the agency twice, the time thrice, the empty hashes) is written once."""

    def __init__(self, agency: str, at: datetime) -> None:
        self.agency, self.at, self.bound = agency, at, _bound()
        self._when = _micros(at)
        self._middle = _middle(agency, self._when)
        self._named = hashlib.sha1(COPY_NAMESPACE.bytes + f"applied:{agency}:".encode())  # `_id`'s start

    def of(self, listing_id: str, version: int, row_hash: str, partition: int, offset: int) -> Encoded:
        """The acknowledgement that the copy holds the row hashing to `row_hash` ("": none) at `version`."""
        named = self._named.copy()
        named.update(f"{partition}:{offset}".encode())
        event_id = _uuid5(named)  # `_id("applied", agency, partition, offset)`
        if self.bound:
            value = _written(
                self._middle, self._when, event_id, listing_id, version, row_hash, partition, offset
            )
        else:
            value = serde.encode(
                holding(listing_id, version, row_hash, partition, offset, self.agency, self.at)
            )
        return Encoded(APPLIED, event_id, listing_id, self.at, value)


APPLIED = CopyApplied.__name__
_UPSERT, _DELETE = b"\x0cupsert", b"\x0cdelete"  # the op, an Avro string of 6 bytes


def _middle(agency: str, when: bytes) -> bytes:
    """The envelope's agency, occurred_at and recorded_at (`when`), its empty prev_hash, hash and
    signature and null request_id (union branch 0), then copy_agency."""
    return _string(agency) + when + when + b"\x00\x00\x00\x00" + _string(agency)


def _written(middle: bytes, when: bytes, event_id: str, listing_id: str, version: int, row_hash: str,
             partition: int, offset: int) -> bytes:  # fmt: skip
    """A `CopyApplied`'s single-object encoding, field by field in the schema's order."""
    return b"".join((
        _prefix(), _string(event_id), _string(listing_id), _long(version), middle,
        _UPSERT if row_hash else _DELETE, _long(partition), _long(offset), _string(row_hash), when,
    ))  # fmt: skip


@cache
def _prefix() -> bytes:
    return serde.MARKER + serde.registry().writer(APPLIED).fingerprint


@cache
def _bound() -> bool:
    """Whether `_written` writes what `serde.encode` does, for an upsert and a delete."""
    at = datetime(2026, 5, 17, 8, 30, 1, 123456, tzinfo=UTC)
    samples = [("a", "L-é", -3, "x" * 64, 70, 2**40), ("civil-aviation", "L", 2**31 - 1, "", 0, 0)]
    bound = all(
        _written(_middle(agency, _micros(at)), _micros(at), _id("applied", agency, p, o), lid, v, h, p, o)
        == serde.encode(holding(lid, v, h, p, o, agency, at))
        for agency, lid, v, h, p, o in samples
    )
    if not bound:
        log.warning("the CopyApplied schema changed: acknowledgements are encoded by serde.encode (slower)")
    return bound


def _string(text: str) -> bytes:
    data = text.encode()
    return _long(len(data)) + data


@lru_cache(maxsize=8)
def _micros(at: datetime) -> bytes:
    """A timestamp-micros, as fastavro computes it; a batch's acknowledgements mostly share one."""
    delta = at - EPOCH
    return _long((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def digest_of(agency: str, digest: Digest, positions: dict[int, int], at: datetime) -> CopyDigest:
    """The copy's digest, with the positions it reflects: the reconciler compares like with like."""
    root = digest.root()
    return CopyDigest(
        envelope=_envelope(_id("digest", agency, root, sorted(positions.items())), agency, at),
        copy_agency=agency,
        rows=digest.rows,
        root=root,
        buckets=digest.hex_buckets(),
        positions={str(p): o for p, o in sorted(positions.items())},
        taken_at=at,
    )


@dataclass(frozen=True)
class Entitlement:
    """What one agency's copy may hold, by policy: read once, asked of every change a sink takes."""

    agency: str
    fields: frozenset[str]
    measures: frozenset[str]

    @classmethod
    def of(cls, policy: Policy, agency: str) -> Entitlement:
        known = agency in policy.agency_by_id
        fields = frozenset(policy.agency_by_id[agency].fields) if known else frozenset()
        return cls(agency, fields, frozenset(policy.enforced_by(agency, [m.code for m in policy.measures])))


def fault(event: Event, entitled: Entitlement) -> tuple[str, str] | None:
    """Why `event` may not enter the copy `entitled` describes, if it may not: (code, sentence).

    The ledger sends only entitled fields; checking again here means no bug upstream and
    no hand-written message can put a field the agency may not see into its database, nor
    a row no copy may hold (an upsert of a revoked listing) stop the sink.
    """
    agency = entitled.agency
    if not isinstance(event, ViewChanged):
        return "not_a_view_change", f"{type(event).__name__} on a view topic"
    if event.view_agency != agency:
        return "wrong_agency", f"a change for {event.view_agency} on the view topic of {agency}"
    if event.op == "upsert" and event.status not in LIVE:
        return (
            "not_a_view_row",
            f"an upsert with status {event.status!r}: a copy holds {' or '.join(LIVE)} rows",
        )
    extra = sorted(set(event.fields) - entitled.fields)
    foreign = [m for m in event.measures if m not in entitled.measures]
    if extra or foreign:
        return "not_entitled", f"{agency} is not entitled to fields {extra} or measures {foreign}"
    return None
