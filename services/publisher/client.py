"""`Publisher`: the one code path behind the Python client, the CLI and the HTTP API.

For each command: lock its listing (in this process), read the listing topics up
to their current end, answer a retried request from the log, check every rule,
seal the event onto the listing's hash chain, send it to `listings.<agency>` keyed
by listing id, and wait for the broker to confirm it. A refused command raises
before anything is sent, so it publishes nothing.

Races. Commands on one listing run one at a time in a process, and each decides
after reading everything the broker had confirmed, so of two corrections against
the same version in one process exactly one wins. Another process can still slip
an event in between our read and our write; so after delivery the publisher
folds the log up to its own event, in log order, and reports success only if its
event stands there. Two processes of the same agency write to the same partition,
whose order the ledger follows too: the loser gets `ConflictError`. A race between
*different* agencies' topics (a court and the issuer within milliseconds) has no
log order; the ledger admits whichever it reads first and refuses the other into
`rejected`.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType

from services.core.commands import (
    AnyCommand,
    CorrectCommand,
    ExemptCommand,
    IssueCommand,
    ObjectCommand,
    ResolveCommand,
    RevokeCommand,
)
from services.core.connection import KafkaConnection
from services.core.crypto import AgencyKey, seal
from services.core.errors import ConfigurationError, ConflictError, RuleViolation
from services.core.events import ListingEvent, ListingState
from services.core.policy import Policy
from services.core.topics import Topics
from services.publisher.build import EVENT_TYPES, decide
from services.publisher.delivery import ConfirmingProducer
from services.publisher.reader import LogReader
from services.publisher.settings import PublisherSettings
from services.publisher.state import ListingBook, Position, Receipt, receipt_of

Clock = Callable[[], datetime]
LOCK_STRIPES = 64


def utc_now() -> datetime:
    return datetime.now(UTC)


class Publisher:
    """Publishes one agency's commands as sealed listing events, exactly once each.

    It holds that agency's key alone (`signer`) and refuses, before reading anything,
    a command in any other agency's name.
    """

    def __init__(
        self,
        connection: KafkaConnection,
        topics: Topics,
        policy: Policy,
        signer: AgencyKey,
        pseudonym_key: bytes,
        timeout: float = 10.0,
        clock: Clock = utc_now,
    ) -> None:
        if not pseudonym_key:
            raise ConfigurationError("no pseudonym key: set ACCORD_PSEUDONYM_KEY (never commit it)")
        self.policy, self.topics, self.signer, self._key = policy, topics, signer, pseudonym_key
        self._clock = clock
        authors = topics.listing_authors(policy.issuers)
        self.book = ListingBook(policy, authors)
        self._reader = LogReader(connection, list(authors), timeout)
        self._producer = ConfirmingProducer(connection, timeout)
        self._read_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]

    @classmethod
    def from_settings(cls, settings: PublisherSettings, clock: Clock = utc_now) -> Publisher:
        """An agency's publisher: the policy with the trusted public keys, and the agency's own key."""
        policy = settings.keys.policy_with_keys()
        return cls(
            connection=settings.kafka.connection,
            topics=settings.kafka.topics,
            policy=policy,
            signer=settings.keys.agency_key(policy),
            pseudonym_key=settings.secrets.pseudonym_key.get_secret_value().encode(),
            timeout=settings.options.publish_timeout_s,
            clock=clock,
        )

    def issue(self, command: IssueCommand) -> Receipt:
        return self.submit(command)

    def correct(self, command: CorrectCommand) -> Receipt:
        return self.submit(command)

    def revoke(self, command: RevokeCommand) -> Receipt:
        return self.submit(command)

    def exempt(self, command: ExemptCommand) -> Receipt:
        return self.submit(command)

    def object(self, command: ObjectCommand) -> Receipt:
        return self.submit(command)

    def resolve(self, command: ResolveCommand) -> Receipt:
        return self.submit(command)

    def submit(self, command: AnyCommand) -> Receipt:
        """Publish `command` once and return where its event stands; raise if it is refused."""
        private = self.signer.signing_for(command.agency)  # before anything else: never another's name
        with self._stripe(command.listing_id):
            prior = self._catch_up(command)
            if prior is not None:
                return self._answer_retry(prior, command)
            state = self.book.state(command.listing_id)
            event = decide(command, state, self._clock(), self.policy, self._key)
            sealed = seal(event, state.envelope.hash if state else "", private)
            delivered = self._producer.send(self.topics.listings(command.agency), command.listing_id, sealed)
            return self._settle(sealed, Position(delivered.topic, delivered.partition, delivered.offset))

    def current(self, listing_id: str) -> ListingState | None:
        """The listing as the log says it is now (what a clerk reloads after a conflict)."""
        with self._read_lock:
            self._reader.catch_up(self.book.record_decoded)
            return self.book.state(listing_id)

    def catch_up(self) -> None:
        """Read the listing topics to their current end: at start, so the first clerk does not wait."""
        with self._read_lock:
            self._reader.catch_up(self.book.record_decoded)

    def _stripe(self, listing_id: str) -> threading.Lock:
        return self._stripes[zlib.crc32(listing_id.encode()) % LOCK_STRIPES]

    def _catch_up(self, command: AnyCommand) -> Receipt | None:
        """Read the log to its current end; the receipt of this request if it was published before."""
        with self._read_lock:
            self._reader.catch_up(self.book.record_decoded)
            return self.book.receipt(command.agency, command.request_id)

    def _answer_retry(self, prior: Receipt, command: AnyCommand) -> Receipt:
        """A request seen before is answered from the log, never published again."""
        if prior.listing_id != command.listing_id or prior.event_type != EVENT_TYPES[type(command)]:
            raise RuleViolation(
                "request_id_reused",
                f"request_id {command.request_id} was used for a {prior.event_type} of listing "
                f"{prior.listing_id}; use a fresh request_id for a new command",
            )
        if not self.book.stands(prior):
            raise ConflictError(
                "stale_version", f"this request's event {prior.event_id} lost a race; reload and decide again"
            )
        return prior.model_copy(update={"duplicate": True})

    def _settle(self, event: ListingEvent, at: Position) -> Receipt:
        """Fold the log up to our own event, in log order, and say whether it stands."""
        with self._read_lock:
            if self._reader.position(at.topic, at.partition) == at.offset:
                self.book.record(event, at)  # nothing else was written here since our read
                self._reader.skip(at)
            else:
                self._reader.read_through(at, self.book.record_decoded)
            receipt = receipt_of(event, at)
            if not self.book.stands(receipt):
                raise ConflictError(
                    "stale_version",
                    f"another clerk changed listing {event.envelope.listing_id} first; "
                    "your event is in the log but the ledger will refuse it: reload and decide again",
                )
            return receipt

    def close(self) -> None:
        self._producer.close()
        self._reader.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
