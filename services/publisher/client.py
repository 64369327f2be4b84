"""`Publisher`: the one code path behind the Python client, the CLI and the HTTP API.

For each command: lock its listing (in this process), read the ledger's decisions
(`ledger` and `rejected`) up to their current end, answer a retried request from
them, check every rule against the listing as the ledger holds it, seal the event
onto the listing's hash chain, send it to `listings.<agency>` keyed by listing id,
wait for the broker to confirm it, then wait for the ledger's verdict on it.

The answer is the ledger's: success once the listing's state in `ledger` lists the
event; `LedgerRefusal` (a `ConflictError` for a lost race) once `rejected` carries it,
with the ledger's reason; `Undecided` when the wait runs out first. A command refused
by a rule here raises before anything is sent, so it publishes nothing.

Races. Commands on one listing run one at a time in a process, and each decides
after reading every verdict written before it began, so of two corrections against
the same version in one process the second is refused here. Any other race (two
processes, two agencies' topics) is the ledger's to settle: it admits whichever it
reads first and refuses the other, and that clerk is told so.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from services.core.clock import Clock, utc_now
from services.core.cloudevent import source
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
from services.core.crypto import AgencyKey
from services.core.errors import ConfigurationError, RuleViolation
from services.core.events import ListingEvent, ListingState
from services.core.kafka import Delivered
from services.core.policy import Policy
from services.core.sealing import Sealed, seal_encoded
from services.core.topics import Topics
from services.publisher.build import EVENT_TYPES, decide, derived_id
from services.publisher.delivery import ConfirmingProducer
from services.publisher.errors import Undecided, ledger_refusal
from services.publisher.reader import LedgerReader
from services.publisher.settings import PublisherSettings
from services.publisher.state import LedgerBook, Receipt

LOCK_STRIPES = 64


class Publisher:
    """Publishes one agency's commands as sealed listing events and reports the ledger's verdict.

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
        decision_wait: float = 10.0,
        book_dir: Path | None = None,
    ) -> None:
        if not pseudonym_key:
            raise ConfigurationError("no pseudonym key: set ACCORD_PSEUDONYM_KEY (never commit it)")
        self.policy, self.topics, self.signer, self._key = policy, topics, signer, pseudonym_key
        self._clock, self._decision_wait = clock, decision_wait
        authors = topics.listing_authors(policy.issuers)  # no `book_dir`: a book in memory, this process's
        name = f"{topics.namespace or 'accord'}-{signer.agency}"
        self.book = LedgerBook.claim(authors, book_dir, name)
        self._reader = LedgerReader(connection, [topics.ledger, topics.rejected], self.book, timeout)
        self._producer = ConfirmingProducer(connection, timeout, source(topics.namespace, signer.agency))
        self._pending: dict[str, Receipt] = {}  # event id -> sent by this process, verdict not read yet
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
            decision_wait=settings.options.decision_wait_s,
            book_dir=settings.options.book_folder(),
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
        """Publish `command` once; return once the ledger admitted its event, raise if it refused it."""
        self.signer.signing_for(command.agency)  # before anything else: never another's name
        with self._stripe(command.listing_id):
            self._reader.catch_up()
            known = self.recognise(command)
            if known is not None:
                return known
            sent = self._pending.get(command.event_id) or self._publish(command)
            return self._verdict(sent, self._decision_wait)

    def verdict(self, listing_id: str, event_id: str, wait: float = 0.0) -> Receipt:
        """The ledger's word on this agency's event (after `Undecided`): a receipt, or it raises."""
        self._reader.catch_up()
        pending = self._pending.get(event_id) or Receipt(
            status="undecided", listing_id=listing_id, version=0, event_id=event_id,
            event_type="unknown", agency=self.signer.agency, request_id=None,
        )  # fmt: skip
        return self._verdict(pending, wait)

    def current(self, listing_id: str) -> ListingState | None:
        """The listing as the ledger holds it now (what a clerk reloads after a conflict)."""
        self._reader.catch_up()
        return self.book.state(listing_id)

    def catch_up(self) -> None:
        """Read the ledger's decisions to their current end: at start, so the first clerk does not wait."""
        self._reader.catch_up()

    def _stripe(self, listing_id: str) -> threading.Lock:
        return self._stripes[zlib.crc32(listing_id.encode()) % LOCK_STRIPES]

    def recognise(self, command: AnyCommand) -> Receipt | None:
        """The answer to a request seen before (by the ledger, or sent by this process); else None.

        Raises the ledger's refusal of it, or `request_id_reused` for another command's id."""
        event_id, listing_id = command.event_id, command.listing_id
        pending = self._pending.get(event_id)
        if pending is not None and (pending.listing_id, pending.event_type) != (
            listing_id, EVENT_TYPES[type(command)]
        ):  # fmt: skip
            raise _reused(command, pending.listing_id)
        where = self.book.listing_of(event_id)
        if where is not None:
            if where != listing_id or self.book.version_of(where, event_id) != _version_made(command):
                raise _reused(command, where)
            return _receipt(command, self.book.version_of(where, event_id), None, duplicate=True)
        refused = self.book.refusal(command.agency, listing_id, event_id)
        if refused is not None:
            raise ledger_refusal(refused.code, refused.reason, event_id)
        return None

    def prepare(self, command: AnyCommand, state: ListingState | None) -> Sealed[ListingEvent]:
        """The sealed event `command` stands for against `state` and its bytes (encoded once), or the
        `RuleViolation` refusing it."""
        event = decide(command, state, self._clock(), self.policy, self._key)
        private = self.signer.signing_for(command.agency)
        return seal_encoded(event, state.envelope.hash if state else "", private)

    def decided(self, agency: str, listing_id: str, event_id: str) -> bool:
        """Whether the ledger has admitted or refused this agency's event (as read so far)."""
        admitted = self.book.admitted(listing_id, event_id)
        return admitted or self.book.refusal(agency, listing_id, event_id) is not None

    def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait up to `timeout` s for `done()`, checked after each batch of the ledger's decisions read."""
        return self._reader.wait_for(done, timeout)

    def _publish(self, command: AnyCommand) -> Receipt:
        sealed = self.prepare(command, self.book.state(command.listing_id))
        topic = self.topics.listings(command.agency)
        delivered = self._producer.send(topic, command.listing_id, sealed.event, sealed.data)
        sent = _receipt(command, sealed.event.envelope.version, delivered, status="undecided")
        self._pending[sent.event_id] = sent
        return sent

    def _verdict(self, sent: Receipt, wait: float) -> Receipt:
        """Wait up to `wait` s for the ledger to admit or refuse `sent`'s event."""
        agency, listing_id, event_id = sent.agency, sent.listing_id, sent.event_id
        self._reader.wait_for(lambda: self.decided(agency, listing_id, event_id), wait)
        if self.book.admitted(listing_id, event_id):
            self._pending.pop(event_id, None)
            version = self.book.version_of(listing_id, event_id)
            return sent.model_copy(update={"status": "admitted", "version": version})
        refused = self.book.refusal(agency, listing_id, event_id)
        if refused is not None:
            self._pending.pop(event_id, None)
            raise ledger_refusal(refused.code, refused.reason, event_id)
        raise Undecided(sent, wait)

    def close(self) -> None:
        self._producer.close()
        self._reader.close()
        self.book.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _version_made(command: AnyCommand) -> int:
    """The version the command's event gives its listing: every change names the one before."""
    return 1 if isinstance(command, IssueCommand) else command.expected_version + 1


def _reused(command: AnyCommand, listing_id: str) -> RuleViolation:
    return RuleViolation(
        "request_id_reused",
        f"request_id {command.request_id} was used for another command (on listing {listing_id}); "
        "use a fresh request_id for a new command",
    )


def _receipt(
    command: AnyCommand,
    version: int,
    at: Delivered | None,
    duplicate: bool = False,
    status: str = "admitted",
) -> Receipt:
    """The receipt of `command`'s event; the ids it minted derive from its event id (build.derived_id)."""
    event_id = command.event_id
    return Receipt.model_validate(
        {
            "status": status,
            "listing_id": command.listing_id,
            "version": version,
            "event_id": event_id,
            "event_type": EVENT_TYPES[type(command)],
            "agency": command.agency,
            "request_id": command.request_id,
            "topic": at.topic if at else None,
            "partition": at.partition if at else None,
            "offset": at.offset if at else None,
            "objection_id": derived_id("objection", event_id) if isinstance(command, ObjectCommand) else None,
            "exemption_id": derived_id("exemption", event_id) if isinstance(command, ExemptCommand) else None,
            "duplicate": duplicate,
        }
    )
