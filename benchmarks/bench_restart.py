"""Issue 14 goal 1 for the publisher and the reconciler: restart with N listings, and one stale listing.

How the state is built (quickly, not through the services): the publisher's book and the
reconciler's expected views are SQLite snapshots (`core/snapshot.py`), so N listings are
generated straight into those files (`generated_state.py`: SQLite fills the rows that need no
hash from a counter, the leaves are written bucket by bucket in key order, journal and syncs
off for the build), with the log positions they reflect, and a tail of `--tail` real, signed
listing states is written to the `ledger` topic after them, through Kafka. Each generated
listing carries the wire bytes of one real state (a restart never decodes them; a lookup
decodes one). Then each service is restarted in a fresh process (spawned, so its
memory is its own): the publisher answers its first command (`Publisher.current`, which
first catches up with the log's tail), the reconciler's runner opens its snapshot and reads
the tail. Printed: time to that first answer, the child's peak RSS, and the listings read.

The stale-listing search: a copy of the same N listings (a SQLite table of leaves, answering
the reconciler's probe questions as a copy's server does) with one listing stale; timed is
`antientropy.narrow` from the copy's published digest to that one listing, and the bytes its
answers weigh (JSON, as over HTTP), the digest included.

The reconciler's other inputs (`reconciler_backlog.py`): `--acks` acknowledgements, `--findings`
closed pairs of findings and `--digests` digests are written straight to their topics. The
reconciler restarts three times: from the expected views alone (what the snapshot held before
it kept the other inputs: it reads that backlog from its start), then from the snapshot that
first restart committed (only the tail), then from one holding an acknowledgement of every
listing, generated into it (the state of a copy of N listings, without N acks in the topic).

Next to the raw confluent-kafka produce/consume rate of the same run (the machine is shared
and loaded: compare ratios and trends, not absolute figures).

    python benchmarks/bench_restart.py [--listings 1000000 3000000] [--tail 2000] [--acks 300000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generated_state import AGENCY, STALE, build, files
from benchmarks.kafka_limits import broker, raw_consume, raw_produce
from benchmarks.reconciler_backlog import snapshot_of, write_backlog
from services.core.connection import KafkaConnection
from services.core.copystore.probe import Damage, Leaf
from services.core.crypto import Keystore
from services.core.digest import DEFAULT_BUCKETS, FINEST_SPLIT, MODULUS, bucket_of, leaf
from services.core.kafka import EventProducer, consumer, create_topics
from services.core.listing import evolve
from services.core.policy import Policy
from services.core.serde import encode
from services.core.snapshot import Snapshot
from services.core.topics import KEEP_FOREVER, Topics, TopicSpec
from services.core.views import project
from services.reconciler.antientropy import narrow
from services.reconciler.expected import ExpectedViews
from services.reconciler.kept import SCHEMA, TABLES
from services.reconciler.probe import MeteredProbe, wire_size
from tests.support.factory import Ledgerbook, policy_with_keys


class TableCopy:
    """A copy's probe answers from a table of its leaves (what `accord copy serve` computes from rows)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path)

    def hold_tail(self, expected: ExpectedViews, policy: Policy) -> None:
        """The real states of the ledger's tail, as the copy's sink applied them."""
        for (lid,) in expected.snapshot.db.execute(  # a range of the key: LIKE would read every row
            "SELECT listing_id FROM known WHERE listing_id >= 'T-' AND listing_id < 'T.'"
        ):
            row = project(expected.state(lid), AGENCY, policy)
            if row is not None:
                spot, held = bucket_of(lid, FINEST_SPLIT), Leaf.of(row)
                self._db.execute("INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?)",
                                 (spot % DEFAULT_BUCKETS, spot, lid, *held))  # fmt: skip
        self._db.commit()

    def _leaves(self, bucket: int, size: int) -> dict[str, Leaf]:
        query = "SELECT listing_id, version, status, row_hash FROM rows WHERE bucket = ? AND spot % ? = ?"
        found = self._db.execute(query, (bucket % DEFAULT_BUCKETS, size, bucket))
        return {lid: Leaf(v, status, h) for lid, v, status, h in found}

    def digest(self) -> list[str]:
        sums = [0] * DEFAULT_BUCKETS
        for bucket, lid, v, status, h in self._db.execute(
            "SELECT bucket, listing_id, version, status, row_hash FROM rows"
        ):
            sums[bucket] = (sums[bucket] + leaf(lid, v, status, h)) % MODULUS
        return [f"{s:064x}" for s in sums]

    def sub_digest(self, bucket: int, size: int, fanout: int) -> list[str]:
        sums = [0] * fanout
        for lid, found in self._leaves(bucket, size).items():
            j = bucket_of(lid, size * fanout) // size
            sums[j] = (sums[j] + found.value(lid)) % MODULUS
        return [f"{s:064x}" for s in sums]

    def leaves(self, bucket: int, size: int) -> dict[str, Leaf]:
        return self._leaves(bucket, size)

    def positions(self) -> dict[int, int]:
        return {}

    def misplaced(self) -> dict[str, Leaf]:
        return {}

    def damaged(self) -> dict[str, Damage]:
        return {}


def restart_publisher(
    connection: KafkaConnection, topics: Topics, folder: Path, keys: Path, out: dict[str, object]
) -> None:
    """In a fresh process: open the book, answer one command (catching up with the log's tail first)."""
    from services.core.crypto import AgencyKey
    from services.publisher.client import Publisher

    policy, keystore = policy_with_keys(keys)
    start = time.perf_counter()
    publisher = Publisher(connection, topics, policy, AgencyKey("court", keystore.private("court")),
                          b"bench-pseudonym-key", timeout=60.0, book_dir=folder / "publisher")  # fmt: skip
    first = publisher.current("T-0")
    out["publisher_s"] = time.perf_counter() - start
    out["publisher_ok"] = first is not None and publisher.current(STALE) is not None
    out["publisher_rss_mb"] = peak_rss_mb()
    out["publisher_cpu_s"] = time.process_time()
    publisher.close()


def restart_reconciler(
    connection: KafkaConnection, topics: Topics, folder: Path, keys: Path, out: dict[str, object]
) -> None:
    """In a fresh process: open the snapshot, read the ledger's tail (the other topics are empty here)."""
    from services.reconciler.kafkalog import KafkaLog
    from services.reconciler.kept import claim_snapshot
    from services.reconciler.runner import Runner
    from services.reconciler.settings import ReconcilerSettings

    policy, _ = policy_with_keys(keys)
    start = time.perf_counter()
    snapshot = claim_snapshot(folder / "reconciler", f"{topics.namespace}-expected")
    runner = Runner(topics, ReconcilerSettings(), policy, {}, lambda _: None, KafkaLog(connection),
                    EventProducer(connection), snapshot=snapshot)  # fmt: skip
    runner.start()
    while not runner._caught_up_once():
        runner.step()
    out["reconciler_s"] = time.perf_counter() - start
    out["reconciler_rss_mb"] = peak_rss_mb()
    out["reconciler_cpu_s"] = time.process_time()  # before the count below: it reads every listing
    out["reconciler_read"] = runner.read
    out["reconciler_acked"] = runner.engine.acks.acked(AGENCY, "G-0000001")
    out["reconciler_listings"] = len(runner.engine.expected)
    runner.reader.close()
    runner.engine.snapshot.close()


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM). Not `ru_maxrss`: Linux carries that over an
    exec from the forking process, so a child spawned by a parent holding the builder's caches
    reported the parent's 725 MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def in_child(target: Callable[..., None], *args: object) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        out = manager.dict()
        child = context.Process(target=target, args=(*args, out))
        child.start()
        child.join()
        return dict(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listings", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--tail", type=int, default=2000)
    parser.add_argument("--acks", type=int, default=300_000, help="acknowledgements in copies.applied")
    parser.add_argument("--findings", type=int, default=10_000, help="closed pairs of findings in findings")
    parser.add_argument("--digests", type=int, default=300, help="digests in copies.digests")
    parser.add_argument("--search-only", type=int, nargs="*", default=[],
                        help="copies of N listings for the search alone: only the stale listing's bucket "
                        "is built (the search touches no other), no broker")  # fmt: skip
    args = parser.parse_args()
    if args.search_only:
        search_only(args.search_only)
        return
    with broker() as connection, tempfile.TemporaryDirectory() as scratch:
        keys = Path(scratch) / "keys"
        policy, keystore = policy_with_keys(keys)
        raw_topic = f"bench-raw-{uuid.uuid4().hex[:6]}"
        create_topics(connection, [TopicSpec(raw_topic, "key", (), KEEP_FOREVER)], 3, 1)
        produce = raw_produce(connection, raw_topic, 50_000)
        consume = raw_consume(connection, raw_topic, 3, 50_000)
        print(f"raw confluent-kafka: produce {produce:,.0f} records/s, consume {consume:,.0f} records/s "
              "(400 B, acks=all; shared, loaded machine)")  # fmt: skip
        for n in args.listings:
            run(connection, policy, keystore, keys, Path(scratch) / f"n{n}", n, args.tail, args)


def search_only(sizes: list[int]) -> None:
    """The search alone, in copies of each size: it reads the digest and the one differing bucket only."""
    with tempfile.TemporaryDirectory() as scratch:
        policy, _ = policy_with_keys(Path(scratch) / "keys")
        for n in sizes:
            folder, topics = Path(scratch) / f"s{n}", Topics("s.")
            for sub in ("publisher", "reconciler"):
                (folder / sub).mkdir(parents=True)
            began = time.perf_counter()
            build(folder, n, b"", "", topics, only=bucket_of(STALE, DEFAULT_BUCKETS))
            print(
                f"\nthe stale listing's bucket of {n:,} listings built in {time.perf_counter() - began:.0f} s"
            )
            search(folder, topics, n, policy)


def run(connection: KafkaConnection, policy: Policy, keystore: Keystore, keys: Path, folder: Path, n: int,
        tail: int, args: argparse.Namespace) -> None:  # fmt: skip
    topics = Topics(f"r{uuid.uuid4().hex[:8]}.")
    create_topics(connection, topics.specs(policy.issuers, policy.enforcers), 3, 1)
    book, producer = Ledgerbook(keystore), EventProducer(connection)
    template = evolve(None, book.issue("template"))
    failed: list[object] = []
    for i in range(tail):
        producer.send(topics.ledger, f"T-{i}", evolve(None, book.issue(f"T-{i}")),
                      on_delivery=lambda err, _: failed.append(err) if err is not None else None)  # fmt: skip
    producer.close()
    if failed:  # a send's failure is only told to its callback (seen: 3 of 2,000 lost under load 25)
        raise SystemExit(f"{len(failed)} of the tail's {tail} states not delivered: {failed[0]}")
    probe = consumer(connection, connection.group("bench-cluster"))
    cluster = probe.list_topics(timeout=10).cluster_id or ""
    probe.close()
    for sub in ("publisher", "reconciler"):
        (folder / sub).mkdir(parents=True)
    began = time.perf_counter()
    build(folder, n, encode(template), cluster, topics)
    built = time.perf_counter() - began
    print(f"\n{n:,} listings generated into the snapshots and the copy in {built:.0f} s; "
          f"{tail:,} real states in the ledger topic after them")  # fmt: skip
    pub = in_child(restart_publisher, connection, topics, folder, keys)
    print(f"  publisher restart -> first command answered: {pub.get('publisher_s', float('nan')):.2f} s, "
          f"peak RSS {pub.get('publisher_rss_mb', 0):.0f} MB, {pub.get('publisher_cpu_s', 0):.1f} CPU-s, "
          f"lookups ok: {pub.get('publisher_ok')}")  # fmt: skip
    began = time.perf_counter()
    write_backlog(connection, topics, AGENCY, args.acks, args.findings, args.digests)
    backlog = args.acks + 2 * args.findings + args.digests
    print(f"  backlog of {args.acks:,} acks, {2 * args.findings:,} findings, {args.digests:,} digests "
          f"written in {time.perf_counter() - began:.0f} s")  # fmt: skip
    for how in ("from the expected views alone: the backlog read from its start",
                "from the snapshot that restart committed: only the tail",
                f"from a snapshot holding an ack of each of the {n:,} listings"):  # fmt: skip
        if how.startswith("from a snapshot holding"):
            snapshot_of(files(folder, topics)[1], connection, topics, AGENCY, n, 0)
        rec = in_child(restart_reconciler, connection, topics, folder, keys)
        took, read = rec.get("reconciler_s", float("nan")), rec.get("reconciler_read", 0)
        rss, cpu = rec.get("reconciler_rss_mb", 0), rec.get("reconciler_cpu_s", 0)
        listings, acked = rec.get("reconciler_listings", 0), rec.get("reconciler_acked")
        print(f"  reconciler restart {how} -> ready {took:.2f} s ({read:,} records read, "
              f"{read / took:,.0f}/s; backlog {backlog:,}), peak RSS {rss:.0f} MB, {cpu:.1f} CPU-s, "
              f"{listings:,} listings, G-0000001 acked v{acked}")  # fmt: skip
    search(folder, topics, n, policy)


def search(folder: Path, topics: Topics, n: int, policy: Policy) -> None:
    expected = ExpectedViews(policy, [AGENCY], snapshot=Snapshot(files(folder, topics)[1], SCHEMA, TABLES))
    copy = TableCopy(folder / "copy.sqlite3")
    copy.hold_tail(expected, policy)
    published = expected.digest(AGENCY).hex_buckets()
    published = _with_stale(published, copy)
    probe = MeteredProbe(copy)
    began, cpu = time.perf_counter(), time.process_time()
    found = narrow(AGENCY, expected, published, probe)
    took, cpu = time.perf_counter() - began, time.process_time() - cpu
    names = [s.listing_id for s in found.suspects]
    total = probe.bytes + wire_size(published)
    print(f"  stale listing in a copy of {n:,}: found {names} in {took * 1000:.0f} ms "
          f"({cpu * 1000:.0f} ms CPU, both sides in this process), "
          f"{total / 1024:.1f} KiB exchanged (digest {wire_size(published) / 1024:.1f} KiB + answers "
          f"{probe.bytes / 1024:.1f} KiB); unexplained {found.unexplained}")  # fmt: skip
    expected.close()


def _with_stale(buckets: list[str], copy: TableCopy) -> list[str]:
    """The copy's published digest: the expected one with the stale listing's leaf swapped."""
    bucket = bucket_of(STALE, DEFAULT_BUCKETS)
    i = int(STALE[2:])
    good, bad = leaf(STALE, 1, "active", f"{i:064x}"), leaf(STALE, 1, "revoked", f"{i:064x}")
    out = list(buckets)
    out[bucket] = f"{(int(out[bucket], 16) - good + bad) % MODULUS:064x}"
    return out


if __name__ == "__main__":
    main()
