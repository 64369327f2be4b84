"""Send one event and wait for the broker's confirmation of that event alone; survive the broker.

`EventProducer.send_sync` waits by flushing the whole producer, which ties every
caller to every other caller's messages and cannot tell, under threads, whose
delivery report was whose. Here each send waits on its own report, served by one
background poller, so concurrent HTTP requests confirm independently.

A producer that failed a delivery (timed out, a fatal error of the idempotent
producer, a broker that went away) is replaced by a new one for the next send: an
idempotent producer that hit "Message timed out" or a fatal error can stay unable to
deliver for good. The old one is drained and closed in the background.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from services.core.cloudevent import UNNAMED
from services.core.connection import KafkaConnection
from services.core.errors import BrokerUnavailable, ConfigurationError
from services.core.events import Event
from services.core.kafka import Delivered, EventProducer

log = logging.getLogger("accord.publisher")


class ConfirmingProducer:
    """Idempotent, acks=all (core's producer settings); a failed or late delivery is `BrokerUnavailable`."""

    def __init__(self, connection: KafkaConnection, timeout: float, source: str = UNNAMED) -> None:
        self._connection, self._timeout, self._source = connection, timeout, source
        self._lock = threading.Lock()
        self._producer = self._make()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._serve, name="publisher-delivery", daemon=True)
        self._poller.start()

    def _make(self) -> EventProducer:
        extra: dict[str, Any] = {"linger.ms": 0, "message.timeout.ms": int(self._timeout * 1000)}
        return EventProducer(self._connection, self._source, **extra)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _replace(self, failed: EventProducer, why: str) -> None:
        """Put a new producer in place of `failed` (once, however many senders saw it fail)."""
        with self._lock:
            if self._producer is not failed:
                return
            log.warning("publisher: replacing the producer after %s", why)
            self._producer = self._make()
        threading.Thread(target=_retire, args=(failed, self._timeout), daemon=True).start()

    def send(self, topic: str, key: str, event: Event, encoded: bytes | None = None) -> Delivered:
        producer = self._producer
        done = threading.Event()
        outcome: list[tuple[KafkaError | None, Message]] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            outcome.append((err, msg))
            done.set()

        try:
            producer.send(topic, key, event, on_delivery=on_delivery, encoded=encoded)
        except KafkaException as e:  # a fatal producer refuses to queue: nothing was sent
            self._replace(producer, f"it refused a message: {e}")
            raise BrokerUnavailable(f"the producer failed ({e}); nothing was sent, retry") from e
        # message.timeout.ms guarantees a report by then; the margin covers the poller's cadence.
        if not done.wait(self._timeout + 2.0):
            self._replace(producer, "no delivery report")
            raise BrokerUnavailable(f"no delivery report from {topic} within {self._timeout} s")
        err, msg = outcome[0]
        if err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            raise ConfigurationError(
                f"{self._connection.principal} may not write {topic}: a publisher runs as the agency "
                "whose commands it publishes (nothing was written)"
            )
        if err is not None:
            self._replace(producer, err.str())
            raise BrokerUnavailable(
                f"delivery to {topic} failed: {err.str()}; it may or may not be in the log: "
                "retry with the same request_id (the ledger never admits one event twice)"
            )
        return Delivered(msg.topic() or topic, msg.partition() or 0, msg.offset() or 0)

    def close(self) -> None:
        self._stop.set()
        self._poller.join()
        self._producer.close(self._timeout)


def _retire(producer: EventProducer, timeout: float) -> None:
    """Serve what the old producer still has queued (its senders wait on it), then release it."""
    try:
        producer.close(timeout)
    except BrokerUnavailable as e:
        log.warning("publisher: the replaced producer closed with undelivered messages: %s", e)
