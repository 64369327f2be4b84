"""Replay throughput of `accord audit` over a million listing events, next to raw consumption.

Sealing a million events would take longer than replaying them, so the benchmark
seals one realistic ten-event chain (issue, corrections, exemptions, objections,
revocation) and produces copies of its bytes with a different, equal-length
listing id per copy. The fold accepts them (each copy links to itself); hashes no
longer cover the new ids, so `verify` is measured on a smaller, genuinely sealed
topic instead.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:39092 python benchmarks/bench_replay.py [--events 1000000]

Prints events/s for: producing, consume-only, consume+decode, the state-at replay
(decode, ledger fold, expected views), and verify (signatures and chains).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.audit.replay import decoded, messages
from services.audit.state_at import replay_to
from services.audit.verify import verify
from services.core.connection import KafkaConnection
from services.core.events import Event
from services.core.kafka import admin_client, create_topics, producer_config
from services.core.serde import encode
from services.core.settings import KafkaSettings
from services.core.topics import KEEP_FOREVER, TopicSpec
from tests.support.factory import T0, Ledgerbook, policy_with_keys

TEMPLATE_ID = "L-0000000"
CHAIN = 10


def template_chain(book: Ledgerbook, listing: str) -> list[bytes]:
    """One listing's realistic life in ten sealed, encoded events."""
    events = [
        book.issue(listing, measures=("flight_ban", "rail_ban", "high_consumption")),
        book.correct(listing, severity="severe"),
        book.exempt(listing, "flight_ban"),
        book.object(listing, "obj-1"),
        book.resolve(listing, "obj-1"),
        book.correct(listing, expires_at=T0 + timedelta(days=700)),
        book.exempt(listing, "rail_ban"),
        book.object(listing, "obj-2"),
        book.resolve(listing, "obj-2"),
        book.revoke(listing, reason="obligation_fulfilled"),
    ]
    return [encode(event) for event in events]


def produce(connection: KafkaConnection, topic: str, chain: list[bytes], listings: int) -> None:
    producer = Producer(producer_config(connection, **{"linger.ms": 50, "batch.size": 1_000_000}))
    template = TEMPLATE_ID.encode()
    for n in range(listings):
        listing = f"L-{n:07d}".encode()
        for value in chain:
            while True:
                try:
                    producer.produce(topic, value=value.replace(template, listing), key=listing)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    if producer.flush(120):
        raise SystemExit("producer did not confirm every event")


def produce_keyed(connection: KafkaConnection, topic: str, events: list[Event]) -> None:
    """Genuinely sealed events, each keyed (hence partitioned) by its own listing, as the ledger requires."""
    producer = Producer(producer_config(connection, **{"linger.ms": 50}))
    for event in events:
        producer.produce(topic, value=encode(event), key=event.envelope.listing_id.encode())
        producer.poll(0)
    if producer.flush(120):
        raise SystemExit("producer did not confirm every event")


def timed(label: str, events: int, run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    elapsed = time.perf_counter() - started
    rate = events / elapsed
    print(f"{label:<44} {events:>10,} events  {elapsed:7.1f} s  {rate:>10,.0f} events/s", flush=True)
    return rate


def count(iterable: Iterable[object]) -> int:
    return sum(1 for _ in iterable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--verify-events", type=int, default=20_000)
    args = parser.parse_args()
    connection = KafkaSettings().connection  # KAFKA_BOOTSTRAP_SERVERS and ACCORD_KAFKA_* (README "Security")
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    topic, sealed_topic = f"{prefix}listings.court", f"{prefix}sealed.listings.court"
    specs = [TopicSpec(t, "listing_id", (), KEEP_FOREVER) for t in (topic, sealed_topic)]
    create_topics(connection, specs, partitions=3, replication=1)
    try:
        run(connection, topic, sealed_topic, args.events, args.verify_events)
    finally:
        admin = admin_client(connection)
        for future in admin.delete_topics([topic, sealed_topic], operation_timeout=60).values():
            future.result()


def run(connection: KafkaConnection, topic: str, sealed_topic: str, events: int, verify_events: int) -> None:
    policy, keystore = policy_with_keys(Path(tempfile.mkdtemp(prefix="bench-keys-")))
    listings = events // CHAIN
    chain = template_chain(Ledgerbook(keystore), TEMPLATE_ID)
    total = listings * CHAIN
    print(f"replay benchmark: {total:,} events ({listings:,} listings x {CHAIN}), 3 partitions, {connection}")
    timed("produce (pre-encoded, lz4, acks=all)", total, lambda: produce(connection, topic, chain, listings))
    timed("consume only (batched)", total, lambda: count(messages(connection, [topic])))
    timed("consume + decode (fastavro + model)", total, lambda: count(decoded(messages(connection, [topic]))))
    at = datetime.now(UTC)
    past = replay_to(connection, [topic], policy, at)  # warm: the figure below is a second, measured run
    timed("state-at replay (decode, fold, views)", total, lambda: replay_to(connection, [topic], policy, at))
    assert len(past.replica.states) == listings and not past.replica.refused and not past.undecodable
    book = Ledgerbook(keystore)
    sealed = [book.issue(f"V-{n:07d}") for n in range(verify_events // 2)]
    sealed += [book.revoke(f"V-{n:07d}") for n in range(verify_events // 2)]
    produce_keyed(connection, sealed_topic, sealed)
    result: list[object] = []
    owners = {sealed_topic: "court"}
    timed(
        "verify (hash, Ed25519 signature, chain)",
        len(sealed),
        lambda: result.append(verify(connection, owners, policy)),
    )
    checked = result[0]
    assert getattr(checked, "sound", False), "the sealed topic must verify"


if __name__ == "__main__":
    main()
