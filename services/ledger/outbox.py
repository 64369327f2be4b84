"""The ledger's producer for what it decides (`ledger`, views, `rejected`, expiries), each send a future.

Faust's aiokafka producer spent a quarter of the worker's event loop (per-message Python, TLS writes
on the loop; py-spy on a worker draining a pre-filled topic). librdkafka batches, compresses and
encrypts in its own threads. Each send returns an asyncio future that the delivery report settles on
the worker's loop, so the agent still acks its input only once every write is confirmed, and a failed
delivery raises there and crashes the worker. The tables' changelog records go out here too
(`tables.ConfirmedTable`): through Faust's producer they filled its buffer and held the agent back
("producer buffer full").
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable

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

    def send(self, topic: str, key: str, event: Event, encoded: bytes | None = None) -> asyncio.Future[int]:
        """Queue `event` (`encoded`: its bytes, when already made); the future holds its offset once
        the broker confirmed it (or its failure)."""
        future, delivered = self._awaited(topic)
        self._producer.send(topic, key, event, on_delivery=delivered, encoded=encoded)
        return future

    def send_record(self, topic: str, partition: int, key: bytes, value: bytes | None) -> asyncio.Future[int]:
        """Queue a record that is no event (a table's changelog entry) to `partition`, as `send`."""
        future, delivered = self._awaited(topic)
        self._producer.send_record(topic, partition, key, value, on_delivery=delivered)
        return future

    def _awaited(
        self, topic: str
    ) -> tuple[asyncio.Future[int], Callable[[KafkaError | None, Message], None]]:
        """A future on the running loop, and the delivery report (served in the poller) that settles it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            self._reports.append((loop, future, topic, err, msg.offset()))

        return future, delivered

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
                rounds.setdefault(report[0], []).append(report)
            for loop, reports in rounds.items():
                loop.call_soon_threadsafe(_settle, reports)


Report = tuple[asyncio.AbstractEventLoop, "asyncio.Future[int]", str, KafkaError | None, int | None]


def _settle(reports: list[Report]) -> None:
    for _, future, topic, err, offset in reports:
        if future.done():
            continue
        if err is None:
            future.set_result(-1 if offset is None else offset)
        else:
            future.set_exception(BrokerUnavailable(f"delivery to {topic} failed: {err.str()}"))
