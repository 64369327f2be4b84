"""Send one event and wait for the broker's confirmation of that event alone.

`EventProducer.send_sync` waits by flushing the whole producer, which ties every
caller to every other caller's messages and cannot tell, under threads, whose
delivery report was whose. Here each send waits on its own report, served by one
background poller, so concurrent HTTP requests confirm independently.
"""

from __future__ import annotations

import threading
from typing import Any

from confluent_kafka import KafkaError, Message

from services.core.connection import KafkaConnection
from services.core.errors import BrokerUnavailable
from services.core.events import Event
from services.core.kafka import Delivered, EventProducer


class ConfirmingProducer:
    """Idempotent, acks=all (core's producer settings); a failed or late delivery is `BrokerUnavailable`."""

    def __init__(self, connection: KafkaConnection, timeout: float) -> None:
        extra: dict[str, Any] = {"linger.ms": 0, "message.timeout.ms": int(timeout * 1000)}
        self._producer = EventProducer(connection, **extra)
        self._timeout = timeout
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._serve, name="publisher-delivery", daemon=True)
        self._poller.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def send(self, topic: str, key: str, event: Event) -> Delivered:
        done = threading.Event()
        outcome: list[tuple[KafkaError | None, Message]] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            outcome.append((err, msg))
            done.set()

        self._producer.send(topic, key, event, on_delivery=on_delivery)
        # message.timeout.ms guarantees a report by then; the margin covers the poller's cadence.
        if not done.wait(self._timeout + 2.0):
            raise BrokerUnavailable(f"no delivery report from {topic} within {self._timeout} s")
        err, msg = outcome[0]
        if err is not None:
            raise BrokerUnavailable(f"delivery to {topic} failed: {err.str()}")
        return Delivered(msg.topic() or topic, msg.partition() or 0, msg.offset() or 0)

    def close(self) -> None:
        self._stop.set()
        self._poller.join()
        self._producer.close(self._timeout)
