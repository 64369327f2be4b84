"""What the publisher knows of the ledger's decisions: listing states and refusals. No Kafka here.

The publisher decides a command against the listing as the ledger holds it (the
compacted `ledger` topic: version, hash-chain head, issuer, content) and reports
the ledger's verdict on its event: admitted once the listing's state lists the
event's id, refused once `rejected` carries it. The reader feeds this book.

A refusal counts only for an event its author wrote on its own listing topic (the
one topic an agency can write, by ACL), keyed by that agency and the event id: an
agency cannot forge a refusal of another agency's event by reusing its id.

The book is a `Snapshot` (core/snapshot.py: an SQLite file, issue 14): each
listing's latest state as its wire bytes, the listing and place of each admitted
event id, and the refusals, committed with the log positions they reflect once per
batch read. A restart opens the file and reads only the log's tail; taking a state
or a refusal twice changes nothing, so a batch cut short by a crash is read again
without harm. No Python structure grows with the listings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from services.core.errors import ContractError
from services.core.events import ListingState, Rejected
from services.core.serde import decode, encode
from services.core.snapshot import Snapshot

TABLES = ("states", "events", "refusals")
SCHEMA = """
CREATE TABLE IF NOT EXISTS states (listing_id TEXT PRIMARY KEY, version INTEGER NOT NULL,
    events INTEGER NOT NULL, raw BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, listing_id TEXT NOT NULL,
    version INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refusals (agency TEXT NOT NULL, event_id TEXT NOT NULL,
    listing_id TEXT NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (agency, event_id)) WITHOUT ROWID;
"""


class Receipt(BaseModel):
    """What a caller gets back: the event that stands for the command, and the ledger's word on it.

    `status` is `admitted` (the ledger took it: the listing is now at `version`) or
    `undecided` (the broker holds it, the ledger has not ruled yet: ask again at `ask_again`).
    `topic`/`partition`/`offset` say where this process wrote it; a retry answered from the
    ledger does not know them.
    """

    model_config = ConfigDict(frozen=True)

    status: Literal["admitted", "undecided"] = "admitted"
    listing_id: str
    version: int
    event_id: str
    event_type: str
    agency: str
    request_id: str | None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    objection_id: str | None = None
    exemption_id: str | None = None
    duplicate: bool = False
    ask_again: str | None = None


@dataclass(frozen=True)
class Refusal:
    """The ledger's refusal of one event: its reason code and sentence, as `rejected` carries them."""

    listing_id: str
    code: str
    reason: str


class LedgerBook:
    """The latest state of every listing, and every refusal of an event on its author's topic.

    Safe from any thread: one connection, one lock (a read sees the batch being written)."""

    def __init__(self, authors: Mapping[str, str], snapshot: Snapshot | Path | str = ":memory:") -> None:
        self.authors = dict(authors)  # listing topic -> the only agency that may write it
        self.ignored = 0
        self.snapshot = snapshot if isinstance(snapshot, Snapshot) else Snapshot(snapshot, SCHEMA, TABLES)
        self.path, self._lock, self._db = self.snapshot.path, self.snapshot.lock, self.snapshot.db

    @classmethod
    def claim(cls, authors: Mapping[str, str], folder: Path | None, name: str) -> LedgerBook:
        """A book of this process's own under `folder` (an HTTP server and N import workers of one
        agency each hold one); in memory with no folder."""
        return cls(authors, Snapshot.claimed(folder, name, SCHEMA, TABLES))

    # --- what the reader writes ---------------------------------------------------------

    def take_state(self, state: ListingState, raw: bytes | None = None) -> None:
        """A record of `ledger`: never go back to an older version (a re-stated or replayed one).

        `raw`, the record's bytes as read (which decoded to `state`), is kept as it is: encoding
        the state again cost as much as decoding it, on the thread an import's lines wait for."""
        listing_id = state.envelope.listing_id
        with self._lock:
            known = self._db.execute(
                "SELECT version, events FROM states WHERE listing_id = ?", (listing_id,)
            ).fetchone()
            if known is not None and known[0] > state.envelope.version:
                return
            ids, kept = state.event_ids, raw or encode(state)
            self._db.execute("INSERT OR REPLACE INTO states VALUES (?, ?, ?, ?)",
                             (listing_id, state.envelope.version, len(ids), kept))  # fmt: skip
            first = known[1] if known else 0
            new = [(e, listing_id, first + n + 1) for n, e in enumerate(ids[first:])]
            self._db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?)", new)

    def take_rejected(self, record: Rejected) -> None:
        """A record of `rejected`: kept if it refuses a listing event written on its author's topic."""
        author = self.authors.get(record.source_topic)
        try:
            refused = decode(record.payload, record.source_topic) if author else None
        except ContractError:
            refused = None  # undecodable bytes: no event id, nobody's command
        if refused is None or refused.envelope.agency != author:
            self.ignored += 1
            return
        env = refused.envelope
        with self._lock:
            refusal = (env.agency, env.event_id, env.listing_id, record.reason_code, record.reason)
            self._db.execute("INSERT OR IGNORE INTO refusals VALUES (?, ?, ?, ?, ?)", refusal)

    def close(self) -> None:
        with self._lock:
            self.snapshot.close()

    # --- what commands ask ---------------------------------------------------------------

    def state(self, listing_id: str) -> ListingState | None:
        with self._lock:
            row = self._db.execute("SELECT raw FROM states WHERE listing_id = ?", (listing_id,)).fetchone()
        if row is None:
            return None
        state = decode(row[0], "ledger")
        assert isinstance(state, ListingState)
        return state

    def listing_of(self, event_id: str) -> str | None:
        """The listing an admitted event belongs to."""
        return self._event(event_id)[0]

    def admitted(self, listing_id: str, event_id: str) -> bool:
        """Whether the ledger admitted `event_id` into the listing (one index lookup: no state decoded)."""
        return self._event(event_id)[0] == listing_id

    def refusal(self, agency: str, listing_id: str, event_id: str) -> Refusal | None:
        """The ledger's refusal of `agency`'s event `event_id` on `listing_id`, if it refused it."""
        with self._lock:
            row = self._db.execute(
                "SELECT listing_id, code, reason FROM refusals WHERE agency = ? AND event_id = ?",
                (agency, event_id),
            ).fetchone()
        return Refusal(*row) if row is not None and row[0] == listing_id else None

    def refusals(self) -> dict[tuple[str, str], Refusal]:
        """Every refusal kept, by (agency, event id): for tests and diagnosis, not for a command."""
        with self._lock:
            rows = self._db.execute("SELECT agency, event_id, listing_id, code, reason FROM refusals")
            return {(a, e): Refusal(lid, code, reason) for a, e, lid, code, reason in rows}

    def version_of(self, listing_id: str, event_id: str) -> int:
        """The version an admitted event gave its listing (its place in the history, from 1)."""
        where, version = self._event(event_id)
        if where != listing_id or version is None:
            raise KeyError(f"{event_id} is not admitted into {listing_id}")
        return version

    def _event(self, event_id: str) -> tuple[str | None, int | None]:
        with self._lock:
            row = self._db.execute(
                "SELECT listing_id, version FROM events WHERE event_id = ?", (event_id,)
            ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM states").fetchone()[0])
