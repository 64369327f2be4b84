"""Follows `ledger` and `rejected` into the publisher's `LedgerBook`, and survives the broker.

One thread of its own reads every partition of both topics (assigned, never
committed: the log, not a group offset, is where the publisher's knowledge comes
from), from the positions the book last committed with what they brought, and wakes
whoever waits on the book. A book that does not describe this log (another cluster,
or a stored position outside what the partition now holds: a topic recreated, or
records deleted past it) is emptied and the log read from its start. `catch_up` asks the broker for the
current end of each partition and waits until the thread has read that far, so a
decision taken afterwards has seen every verdict the ledger wrote before it. The ends
are asked once for every caller that began before the question was sent (`_ends`):
concurrent commands share one answer instead of queueing behind each other's.

Recovery is by rebuilding: a client that fails (a broker restart, a leader change, a
lost connection, an answer such as FENCED_LEADER_EPOCH that librdkafka keeps giving
from stale metadata) is closed and made again from the positions read so far; the
thread retries until the broker answers. Callers see `BrokerUnavailable` only while
their own deadline passes without an answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from services.core.connection import KafkaConnection
from services.core.errors import AccordError, BrokerUnavailable, ConfigurationError, ContractError
from services.core.events import ListingState, Rejected
from services.core.kafka import consumer, decode_message
from services.core.snapshot import resume_from
from services.publisher.state import LedgerBook

log = logging.getLogger("accord.publisher")
Partition = tuple[str, int]
RETRY_S = 0.25  # pause before a failed client is made again
ASK_S = 2.0  # the longest one request to the broker may take before it is asked again


class LedgerReader:
    """Reads the ledger's decisions into `book`; `catch_up` and `wait_for` are safe from any thread."""

    def __init__(
        self, connection: KafkaConnection, topics: Iterable[str], book: LedgerBook, timeout: float
    ) -> None:
        self._connection, self._topics, self._timeout = connection, sorted(topics), timeout
        self.book = book
        self.positions: dict[Partition, int] = {}
        self.undecodable = 0
        self._batches = 0  # batches read that held a message: progress, for `catch_up`
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._reopen = threading.Event()
        self._problem: AccordError | None = None
        self._probe: Consumer | None = None  # asks where the topics end (ListOffsets)
        self._asked = threading.Condition()  # one question at a time, its answer shared
        self._asking = False
        self._answer: tuple[float, dict[Partition, int]] | None = None  # (when it was asked, the ends)
        self._known: list[Partition] = []  # the partitions of the topics, as the probe last saw them
        self._thread: threading.Thread | None = None

    # --- what callers ask -------------------------------------------------------------

    def catch_up(self) -> None:
        """Return once every verdict the ledger had written when this was called has been read."""
        self._start()
        ends = self._ends()

        def done() -> bool:
            return all(self.positions.get(p, 0) >= end for p, end in ends.items())

        with self._changed:  # gives up only after `timeout` without progress, never for length
            while not done():
                if not self._changed.wait_for(_moved_on(self, done), self._timeout):
                    self._reopen.set()  # reading made no progress: make the consumer again
                    raise self._unavailable(f"reading {self._topics} made no progress for {self._timeout} s")

    def wait_for(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until `done()` holds (checked under the book's lock after each batch read)."""
        self._start()
        with self._changed:
            return self._changed.wait_for(done, self._timeout if timeout is None else timeout)

    def _unavailable(self, what: str) -> AccordError:
        if isinstance(self._problem, ConfigurationError):
            return self._problem
        cause = f": {self._problem}" if self._problem else ""
        return BrokerUnavailable(f"{what}{cause}")

    # --- where the topics end now ------------------------------------------------------

    def _ends(self) -> dict[Partition, int]:
        """Each partition's high watermark, as asked after this call began.

        One request at a time serves every caller: one that began before the request was
        sent takes its answer, the others wait for the next (so under many threads a
        command costs a fraction of a ListOffsets, never a queue of them)."""
        began = time.monotonic()
        with self._asked:
            while True:
                if self._answer is not None and self._answer[0] >= began:
                    return self._answer[1]
                if not self._asking:
                    self._asking = True
                    break
                self._asked.wait()
        answer: tuple[float, dict[Partition, int]] | None = None
        try:
            sent = time.monotonic()
            answer = (sent, self._ask_ends())
            return answer[1]
        finally:
            with self._asked:
                self._asking = False
                self._answer = answer or self._answer
                self._asked.notify_all()

    def _ask_ends(self) -> dict[Partition, int]:
        """The high watermarks, asked again (on a new client) until `timeout` passes."""
        deadline = time.monotonic() + self._timeout
        refused: AccordError | None = None  # the clearest answer seen: kept over a later time-out
        while True:
            try:
                return self._watermarks(min(ASK_S, max(0.1, deadline - time.monotonic())))
            except (KafkaException, KeyError, AccordError) as e:
                self._drop_probe()  # a client that failed once may keep failing (stale metadata)
                if isinstance(e, AccordError) and not isinstance(refused, ConfigurationError):
                    refused = e
                if time.monotonic() > deadline:
                    if refused is not None:
                        raise refused from (None if refused is e else e)
                    raise BrokerUnavailable(f"cannot read the ends of {self._topics}: {e}") from e
                time.sleep(RETRY_S / 2)

    def _watermarks(self, timeout: float) -> dict[Partition, int]:
        if self._probe is None:
            self._probe = consumer(self._connection, self._connection.group("publisher"))
            self._known = self._partitions(self._probe, timeout)  # asked again with each new probe
        return {
            tp: self._probe.get_watermark_offsets(TopicPartition(*tp), timeout=timeout, cached=False)[1]
            for tp in self._known
        }

    def _drop_probe(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def _partitions(self, client: Consumer, timeout: float) -> list[Partition]:
        metadata = client.list_topics(timeout=timeout)
        found = {t: metadata.topics.get(t) for t in self._topics}
        absent = [t for t, m in found.items() if m is None]
        if absent:
            raise ConfigurationError(
                f"topics {absent} do not exist, or {self._connection.principal} may not read them: "
                "create the backbone's topics and ACLs (accord backbone up --topics-only)"
            )
        leaderless = [t for t, m in found.items() if m is not None and m.error is not None]
        if leaderless:
            raise BrokerUnavailable(f"topics {leaderless} have no leader yet")
        return [(t, p) for t, m in found.items() if m is not None for p in m.partitions]

    # --- the reading thread ------------------------------------------------------------

    def _start(self) -> None:
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._follow, name="publisher-ledger", daemon=True)
                self._thread.start()

    def _follow(self) -> None:
        reader: Consumer | None = None
        while not self._stop.is_set():
            try:
                if reader is None or self._reopen.is_set():
                    reader = self._reopened(reader)
                self._read_batch(reader)
                self._problem = None
            except (KafkaException, AccordError) as e:
                self._problem = e if isinstance(e, AccordError) else BrokerUnavailable(str(e))
                log.warning("publisher: reading the ledger failed, making the consumer again: %s", e)
                reader = self._closed(reader)
                self._stop.wait(RETRY_S)
        self._closed(reader)

    def _reopened(self, old: Consumer | None) -> Consumer:
        self._closed(old)
        self._reopen.clear()
        made = consumer(self._connection, self._connection.group("publisher"), **{"fetch.wait.max.ms": 50})
        try:
            partitions = self._partitions(made, ASK_S)
            with self._changed:
                if not self.positions:
                    self.positions = resume_from(made, self.book.snapshot, partitions, ASK_S)
                for tp in partitions:
                    self.positions.setdefault(tp, 0)
            made.assign([TopicPartition(t, p, offset) for (t, p), offset in self.positions.items()])
        except BaseException:
            made.close()
            raise
        return made

    @staticmethod
    def _closed(reader: Consumer | None) -> None:
        if reader is not None:
            reader.close()

    def _read_batch(self, reader: Consumer) -> None:
        batch = _next_batch(reader)
        with self._changed:
            for msg in batch:
                self._take(msg)
            self._batches += bool(batch)
            for tp in reader.position([TopicPartition(t, p) for t, p in self.positions]):
                key = (tp.topic, tp.partition)  # past offsets no message is delivered for
                if tp.offset >= 0:
                    self.positions[key] = max(self.positions[key], tp.offset)
            if batch:
                self.book.snapshot.commit(self.positions)
            self._changed.notify_all()

    def _take(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            raise BrokerUnavailable(f"reading {msg.topic()} failed: {err.str()}")
        key, offset = (msg.topic() or "", msg.partition() or 0), msg.offset() or 0
        if offset < self.positions.get(key, 0):
            return
        self.positions[key] = offset + 1
        try:
            event = decode_message(msg).event
        except ContractError:
            self.undecodable += 1
            return
        if isinstance(event, ListingState):
            self.book.take_state(event, msg.value())
        elif isinstance(event, Rejected):
            self.book.take_rejected(event)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._drop_probe()


def _moved_on(reader: LedgerReader, done: Callable[[], bool]) -> Callable[[], bool]:
    """True once `done` holds or the reader has read another batch since this was made."""
    before = reader._batches
    return lambda: done() or reader._batches != before


def _next_batch(reader: Any) -> list[Message]:
    """What has arrived, as soon as anything has: `consume` alone would wait for a full batch."""
    first = reader.poll(0.1)
    if first is None:
        return []
    return [first, *reader.consume(num_messages=499, timeout=0)]
