"""The ledger's producer for what it decides (`ledger`, views, `rejected`, expiries), each send a future.

Faust's aiokafka producer spent a quarter of the worker's event loop (per-message Python, TLS writes
on the loop; py-spy on a worker draining a pre-filled topic). librdkafka batches, compresses and
encrypts in its own threads. Each send returns an asyncio future that the delivery report settles on
the worker's loop, so the agent still acks its input only once every write is confirmed, and a failed
delivery raises there and crashes the worker. The tables' changelogs stay Faust's.
"""

from __future__ import annotations

import asyncio
import threading

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
        self._poller = threading.Thread(target=self._serve, name="ledger-outbox", daemon=True)
        self._poller.start()

    def send(self, topic: str, key: str, event: Event, encoded: bytes | None = None) -> asyncio.Future[None]:
        """Queue `event` (`encoded`: its bytes, when already made); the future is done when the broker
        confirmed it (or failed to)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(_settle, future, topic, err)

        self._producer.send(topic, key, event, on_delivery=delivered, encoded=encoded)
        return future

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._poller.join()
        self._producer.close(timeout)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(POLL_S)


def _settle(future: asyncio.Future[None], topic: str, err: KafkaError | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(BrokerUnavailable(f"delivery to {topic} failed: {err.str()}"))
