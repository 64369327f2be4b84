"""The ledger's producer for what it decides (`ledger`, views, `rejected`, expiries), counted by batch.

Faust's aiokafka producer spent a quarter of the worker's event loop (per-message Python, TLS writes
on the loop; py-spy on a worker draining a pre-filled topic). librdkafka batches, compresses and
encrypts in its own threads. Each send is counted in the `Deliveries` of what it belongs to (a
batch's decisions, its changelog records, a tick's expiries), which the delivery reports settle on
the worker's loop, so the agent still acks its input only once every write is confirmed, and a failed
delivery raises there and crashes the worker. A future per record, each gathered, cost the loop
~8 µs a record (five records an event); a count costs a fraction. The tables' changelog records go
out here too (`tables.ConfirmedTable`): through Faust's producer they filled its buffer and held the
agent back ("producer buffer full").
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from functools import partial

from confluent_kafka import KafkaError, Message

from services.core.connection import KafkaConnection
from services.core.errors import BrokerUnavailable
from services.core.events import Event
from services.core.kafka import EventProducer

POLL_S = 0.05  # how often the poller serves delivery reports


class Outbox:
    """An idempotent, acks=all producer (`core.kafka.producer_config`) with a thread serving its reports."""

    def __init__(self, connection: KafkaConnection, linger_s: float, source: str) -> None:
        """`source`: the ledger's CloudEvents source, every message's `ce_source`."""
        self._producer = EventProducer(connection, source, **{"linger.ms": int(linger_s * 1000)})
        self._stop = threading.Event()
        self._reports: deque[Report] = deque()  # delivered, not yet handed to the loop (any thread appends)
        self._poller = threading.Thread(target=self._serve, name="ledger-outbox", daemon=True)
        self._poller.start()

    def send(
        self, topic: str, key: str, event: Event, deliveries: Deliveries, encoded: bytes | None = None
    ) -> None:
        """Queue `event` (`encoded`: its bytes, when already made), counted in `deliveries`."""
        self._producer.send(
            topic, key, event, on_delivery=partial(self._delivered, deliveries), encoded=encoded
        )
        deliveries.queued += 1

    def send_record(
        self, topic: str, partition: int, key: bytes, value: bytes | None, deliveries: Deliveries
    ) -> None:
        """Queue a record that is no event (a table's changelog entry) to `partition`, as `send`."""
        self._producer.send_record(
            topic, partition, key, value, on_delivery=partial(self._delivered, deliveries)
        )
        deliveries.queued += 1

    def _delivered(self, deliveries: Deliveries, err: KafkaError | None, msg: Message) -> None:
        """A delivery report (in the poller's thread), kept for the loop of `deliveries`."""
        self._reports.append((deliveries, err, msg.topic() or "", msg.partition() or 0, msg.offset()))

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._poller.join()
        self._producer.close(timeout)

    def _serve(self) -> None:
        """Serve delivery reports; hand each round's over to the loop in one call, not one a record:
        a wake-up of the loop per record cost the agent more than the records' own Python."""
        while not self._stop.is_set():
            self._producer.poll(POLL_S)
            rounds: dict[asyncio.AbstractEventLoop, list[Report]] = {}
            while self._reports:
                report = self._reports.popleft()
                rounds.setdefault(report[0].loop, []).append(report)
            for loop, reports in rounds.items():
                loop.call_soon_threadsafe(_settle, reports)


class Deliveries:
    """The records queued for one purpose (a batch's decisions, its changelog records, a tick's
    expiries), settled on the loop that made it: `confirmed` waits until every one is confirmed."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queued = self.settled = 0  # `queued` counts on the loop's thread, as `settled` does
        self.highest: dict[tuple[str, int], int] = {}  # the last offset confirmed per topic partition
        self.failure: BrokerUnavailable | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def confirmed(self) -> dict[tuple[str, int], int]:
        """The highest offset confirmed in each topic partition, once every record queued so far is
        confirmed; raises `BrokerUnavailable` at the first that failed (the others not awaited)."""
        while self.failure is None and self.settled < self.queued:
            if self._waiter is None or self._waiter.done():
                self._waiter = self.loop.create_future()
            await self._waiter
        if self.failure is not None:
            raise self.failure
        return self.highest

    def arrived(self, err: KafkaError | None, topic: str, partition: int, offset: int | None) -> None:
        """One delivery report, on the loop."""
        self.settled += 1
        if err is not None:
            self.failure = self.failure or BrokerUnavailable(f"delivery to {topic} failed: {err.str()}")
        elif offset is not None and offset > self.highest.get((topic, partition), -1):
            self.highest[(topic, partition)] = offset
        waiter = self._waiter
        if waiter is not None and not waiter.done() and (err is not None or self.settled >= self.queued):
            waiter.set_result(None)


Report = tuple[Deliveries, KafkaError | None, str, int, int | None]


def _settle(reports: list[Report]) -> None:
    for deliveries, err, topic, partition, offset in reports:
        deliveries.arrived(err, topic, partition, offset)
