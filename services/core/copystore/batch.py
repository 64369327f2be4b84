"""One batch of view messages written in one transaction: rows, versions, digest, positions, acks.

Deciding each message needs what the copy knows (positions, the newest version delivered,
the leaf stored for a row); a batch reads that once for all its listings, decides every
message in order in memory (a later change of the same listing sees the earlier one), then
writes each table with one statement repeated (`executemany`). The result is the one a
message-by-message apply would give, at a fraction of the round trips.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.core.copystore import columns
from services.core.copystore.columns import ROW_COLUMNS, Cursor, hex_or_none
from services.core.copystore.port import Applied, Change, Holding, Refusal, StoreError, judge
from services.core.digest import MODULUS, bucket_of, leaf
from services.core.events import ViewChanged
from services.core.views import row_data

CHUNK = 500  # ids per IN (...) list: well under every database's limit on parameters

_UNREAD: Any = object()  # a listing whose row the batch has not replaced (still the stored one)


@dataclass
class _Listing:
    """What the batch knows and did to one listing."""

    known: int  # newest version delivered
    stored: int | None  # the leaf `apply` added for the stored row; None: no row, or one never added
    existed: bool  # a row was stored before the batch
    held: Any = _UNREAD  # the row_hash of the row the batch leaves ("": none), once it replaced it
    value: int = 0  # that row's leaf
    columns: tuple[Any, ...] = ()  # and its column values
    delivered: bool = False


@dataclass
class BatchWriter:
    """Decides a batch inside the caller's transaction (`cur`), then writes it (`write`)."""

    cur: Cursor
    size: int
    positions: dict[int, int] = field(default_factory=dict)
    listings: dict[str, _Listing] = field(default_factory=dict)
    outbox: list[tuple[int, int, bytes]] = field(default_factory=list)
    advanced: set[int] = field(default_factory=set)
    applied: bool = False

    def take(self, batch: Sequence[Change | Refusal]) -> list[Applied]:
        self.cur.execute("SELECT view_partition, next_offset FROM copy_positions")
        self.positions = {int(p): int(o) for p, o in self.cur.fetchall()}
        self._prefetch({item.change.envelope.listing_id for item in batch if isinstance(item, Change)})
        outcomes = [self._one(item) for item in batch]
        self._write()
        return outcomes

    def _prefetch(self, ids: set[str]) -> None:
        versions = dict(self._select_in("SELECT listing_id, version FROM copy_versions", ids))
        leaves = dict(self._select_in("SELECT listing_id, leaf FROM copy_rows", ids))
        for lid in ids:
            known, stored = int(versions.get(lid, 0)), hex_or_none(leaves.get(lid))
            self.listings[lid] = _Listing(known, stored, lid in leaves)

    def _select_in(self, select: str, ids: Iterable[str]) -> list[Any]:
        found, ordered = [], sorted(ids)
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            self.cur.execute(f"{select} WHERE listing_id IN ({', '.join('?' * len(chunk))})", tuple(chunk))
            found += self.cur.fetchall()
        return found

    def _one(self, item: Change | Refusal) -> Applied:
        if item.offset < self.positions.get(item.partition, 0):
            return Applied.REPEATED
        self.positions[item.partition] = item.offset + 1
        self.advanced.add(item.partition)
        if isinstance(item, Refusal):
            self._keep(item.partition, item.offset, item.ack)
            return Applied.SKIPPED
        change, state = item.change, self.listings[item.change.envelope.listing_id]
        outcome = judge(change, state.known)
        if outcome is Applied.REPEATED:
            return outcome
        if outcome is Applied.APPLIED:
            held = self._replace(state, change)
        else:
            held = self._holding(change.envelope.listing_id, state)
        self._keep(item.partition, item.offset, item.ack(held) if item.ack else None)
        return outcome

    def _replace(self, state: _Listing, change: ViewChanged) -> Holding:
        """The listing's row becomes the change's (or none); its JSON is rendered once, for the
        columns, the row hash and the leaf alike."""
        version = change.envelope.version
        state.known, state.delivered, self.applied = max(state.known, version), True, True
        if change.op != "upsert":
            state.held = ""
            return Holding(version)
        state.columns, state.held = columns.rendered(row_data(change))
        state.value = leaf(change.envelope.listing_id, version, change.status, state.held)
        return Holding(version, state.held)

    def _holding(self, listing_id: str, state: _Listing) -> Holding:
        """What the copy holds of a listing, for the acknowledgement of a change it passed over (a row
        the batch replaced is at the newest version delivered: an older change is never applied)."""
        if state.held is not _UNREAD:
            return Holding(state.known, state.held)
        self.cur.execute(f"SELECT {ROW_COLUMNS} FROM copy_rows WHERE listing_id = ?", (listing_id,))
        found = self.cur.fetchone()
        try:
            row = columns.decode(tuple(found)) if found else None
        except StoreError:
            row = None  # a damaged row: the acknowledgement says no row, the reconciler finds it
        return Holding(row.version, row.row_hash()) if row is not None else Holding(state.known)

    def _keep(self, partition: int, offset: int, ack: bytes | None) -> None:
        if ack is not None:
            self.outbox.append((partition, offset, ack))

    # --- writes ------------------------------------------------------------------------

    def _write(self) -> None:
        replaced = {lid: s for lid, s in self.listings.items() if s.held is not _UNREAD}
        buckets = {lid: bucket_of(lid, self.size) for lid in replaced}  # each worked out once
        self._write_rows(replaced, buckets)
        self._write_buckets(replaced, buckets)
        delivered = [(lid, s.known) for lid, s in self.listings.items() if s.delivered]
        self.cur.executemany(
            "INSERT INTO copy_versions (listing_id, version) VALUES (?, ?) ON CONFLICT (listing_id) "
            "DO UPDATE SET version = CASE WHEN excluded.version > copy_versions.version "
            "THEN excluded.version ELSE copy_versions.version END",
            delivered,
        )
        self.cur.executemany(
            "INSERT INTO copy_positions (view_partition, next_offset) VALUES (?, ?) ON CONFLICT "
            "(view_partition) DO UPDATE SET next_offset = excluded.next_offset",
            [(p, self.positions[p]) for p in sorted(self.advanced)],
        )
        self.cur.executemany(
            "INSERT INTO copy_outbox (view_partition, view_offset, ack) VALUES (?, ?, ?)", self.outbox
        )
        if self.applied:
            self.cur.execute(
                "INSERT INTO copy_meta (name, value) VALUES ('last_applied_at', ?) ON CONFLICT (name) "
                "DO UPDATE SET value = excluded.value",
                (datetime.now(UTC).isoformat(),),
            )

    def _write_rows(self, replaced: dict[str, _Listing], buckets: dict[str, int]) -> None:
        gone = [(lid,) for lid, s in replaced.items() if s.existed]
        self.cur.executemany("DELETE FROM copy_rows WHERE listing_id = ?", gone)
        self.cur.executemany(
            f"INSERT INTO copy_rows ({ROW_COLUMNS}, bucket, leaf) VALUES ({', '.join('?' * 11)})",
            [(*s.columns, buckets[lid], f"{s.value:064x}")
             for lid, s in replaced.items() if s.held],
        )  # fmt: skip

    def _write_buckets(self, replaced: dict[str, _Listing], buckets: dict[str, int]) -> None:
        """Each replaced listing takes out the leaf `apply` added for it (from the bucket its id falls
        in: a hand-edited bucket column cannot mislead this) and adds the leaf of its new row."""
        deltas: dict[int, list[int]] = {}
        for lid, s in replaced.items():
            delta = deltas.setdefault(buckets[lid], [0, 0])
            if s.stored is not None:
                delta[0], delta[1] = delta[0] - s.stored, delta[1] - 1
            if s.held:
                delta[0], delta[1] = delta[0] + s.value, delta[1] + 1
        if not deltas:
            return
        marks = ", ".join("?" * len(deltas))
        self.cur.execute(f"SELECT bucket, accumulator, rows FROM copy_buckets WHERE bucket IN ({marks})",
                         tuple(deltas))  # fmt: skip
        held = {int(b): (int(a, 16), int(n)) for b, a, n in self.cur.fetchall()}
        self.cur.executemany(
            "INSERT INTO copy_buckets (bucket, accumulator, rows) VALUES (?, ?, ?) ON CONFLICT (bucket) "
            "DO UPDATE SET accumulator = excluded.accumulator, rows = excluded.rows",
            [(b, f"{(held.get(b, (0, 0))[0] + d[0]) % MODULUS:064x}", held.get(b, (0, 0))[1] + d[1])
             for b, d in sorted(deltas.items())],
        )  # fmt: skip
