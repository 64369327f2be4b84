"""`rebuild --agency X --store URL`: a fresh copy of X's view, ready to replace a lost or corrupted one.

The copy is built the way its sink builds it, by applying `views.<X>` from offset 0
through `CopyStore.apply` at each change's real partition and offset. That is what
makes it a drop-in replacement: the store keeps its consumed position in the same
transaction as each change, so the sink started on it resumes exactly after the
last change it holds. Synthetic positions could not promise that: too high and the
sink would skip real changes, too low and it would re-apply stale ones. The views
topic is compacted, but revocations are typed deletes, never tombstones, so the
latest change of every listing is still there.

The result is then checked against the system of record: the listing topics are
folded as the ledger folds them and projected for X, and the rebuilt digest must
equal that expected digest. A difference means the ledger is behind (or wrong);
it is reported listing by listing and the command fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.audit.output import Report, Table
from services.audit.replay import Meter, Undecodable, decoded, messages
from services.audit.state_at import Wanted, replay_to
from services.core.connection import KafkaConnection
from services.core.copystore import Applied, open_store
from services.core.errors import ConfigurationError
from services.core.events import ViewChanged
from services.core.policy import Policy
from services.core.position import Position
from services.core.views import ViewRow

DIFF_COLUMNS = ("listing", "rebuilt", "expected")
END_OF_TIME = datetime.max.replace(tzinfo=UTC)  # every event in the log, whatever its recorded time


@dataclass
class Rebuilt:
    """What was written, and how it compares with the view the listing log implies."""

    agency: str
    applied: int = 0
    overtaken: int = 0  # changes older than one already applied (a repair the ledger overtook): refused
    rows: int = 0
    root: str = ""
    expected_root: str = ""
    positions: dict[int, int] = field(default_factory=dict)
    differences: list[tuple[str, int | None, int | None]] = field(default_factory=list)
    undecodable: list[Undecodable] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        return self.root == self.expected_root and not self.differences


def differences(built: list[ViewRow], expected: list[ViewRow]) -> list[tuple[str, int | None, int | None]]:
    """(listing, rebuilt version, expected version) of every row that is not exactly as expected."""
    have = {row.listing_id: row for row in built}
    want = {row.listing_id: row for row in expected}
    return [
        (
            listing,
            have[listing].version if listing in have else None,
            want[listing].version if listing in want else None,
        )
        for listing in sorted(have.keys() | want.keys())
        if have.get(listing) != want.get(listing)
    ]


def write_copy(
    connection: KafkaConnection, views_topic: str, agency: str, url: str, meter: Meter | None = None
) -> tuple[Rebuilt, list[ViewRow]]:
    """Apply every change of `views_topic` to the empty store at `url`, each at its real position."""
    result = Rebuilt(agency)
    store = open_store(url, agency)
    try:
        if store.positions() or next(iter(store.rows()), None) is not None:
            raise ConfigurationError(f"{url} already holds a copy: rebuild into an empty store")
        for item in decoded(messages(connection, [views_topic], meter), on_bad=result.undecodable.append):
            change = item.event
            if isinstance(change, ViewChanged) and change.view_agency == agency:
                taken = store.apply(change, item.position.partition, item.position.offset)
                result.applied += taken is Applied.APPLIED
                result.overtaken += taken is Applied.OVERTAKEN
        built = sorted(store.rows(), key=lambda row: row.listing_id)
        result.rows, result.root = len(built), store.digest().root()
        result.positions = dict(store.positions())
    finally:
        store.close()
    return result, built


def check_against_log(
    result: Rebuilt,
    built: list[ViewRow],
    connection: KafkaConnection,
    listing_names: list[str],
    policy: Policy,
    refused: set[Position],
    meter: Meter | None = None,
) -> Rebuilt:
    """Compare the rebuilt copy with X's view as the listing log implies it now."""
    wanted = Wanted(agency=result.agency)
    truth = replay_to(
        connection, listing_names, policy, END_OF_TIME, refused=refused, meter=meter, wanted=wanted
    )
    expected = truth.view(result.agency)
    result.expected_root = truth.digests[result.agency].root()
    result.differences = differences(built, expected)
    return result


def rebuild_report(result: Rebuilt, url: str) -> Report:
    """The differences (none, when the copy is right), then what was written and where the sink resumes."""
    rows = [
        {
            "listing": listing,
            "rebuilt": _version(have),
            "expected": _version(want),
        }
        for listing, have, want in result.differences
    ]
    positions = ", ".join(f"{p}:{o}" for p, o in sorted(result.positions.items())) or "none"
    notes = [
        f"rebuilt {result.agency}'s copy in {url}: {result.rows} rows from {result.applied} view changes"
        f" ({result.overtaken} older than a version already applied, refused);"
        f" positions (partition:next offset) {positions}",
        f"digest root {result.root}; expected from the listing log {result.expected_root}",
        "the copy equals the view the listing log implies: start its sink on this store"
        if result.matches
        else f"{len(rows)} listing(s) differ from the listing log: the ledger is behind or wrong (see above)",
    ]
    notes += [f"undecodable: {bad.position}: {bad.reason}" for bad in result.undecodable]
    title = "Listings where the rebuilt copy differs from the listing log"
    return Report([Table("differences", title, DIFF_COLUMNS, rows)], notes, failed=not result.matches)


def _version(version: int | None) -> str:
    return "absent" if version is None else f"v{version}"
