"""What a publisher call raises beyond core's families: the ledger's verdicts it reports.

`LedgerRefusal` (a `RuleViolation`): the broker took the event and the ledger refused
it, with the ledger's reason code and sentence; `LedgerConflict` is the one refused
because another change took the version first (also a `ConflictError`). `Undecided`:
the broker holds the event and the ledger has not ruled within the wait.
"""

from __future__ import annotations

from services.core.errors import AccordError, ConflictError, RuleViolation
from services.publisher.state import Receipt

# The ledger's reason codes for an event that lost a race for its version.
CONFLICT_CODES = frozenset({"stale_version", "version_conflict"})


class LedgerRefusal(RuleViolation):
    """The ledger refused the event: `code`/`message` are the ledger's, `event_id` is the event's."""

    def __init__(self, code: str, message: str, event_id: str) -> None:
        super().__init__(code, message)
        self.event_id = event_id


class LedgerConflict(ConflictError, LedgerRefusal):
    """The ledger refused the event because the listing had moved on: reload and decide again."""

    def __init__(self, code: str, message: str, event_id: str) -> None:
        LedgerRefusal.__init__(self, code, message, event_id)


def ledger_refusal(code: str, reason: str, event_id: str) -> LedgerRefusal:
    sentence = f"the ledger refused event {event_id}: {reason}"
    kind = LedgerConflict if code in CONFLICT_CODES else LedgerRefusal
    return kind(code, sentence, event_id)


class Undecided(AccordError):
    """Accepted by the broker, not yet decided by the ledger; `receipt` says which event to ask about."""

    def __init__(self, receipt: Receipt, waited: float) -> None:
        super().__init__(
            f"event {receipt.event_id} is in the log but the ledger has not ruled on it within {waited} s; "
            "ask again later (the answer will not change by asking twice)"
        )
        self.receipt = receipt
