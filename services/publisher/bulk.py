"""`accord publish import`: a file of commands, each checked as one, published as a stream.

Every line is the command it names, refused or published whole: it is checked by
the same rules as a single command (`Publisher.prepare`), against the listing as the
ledger holds it or, for a listing an earlier line of the file changed, as that line
left it. Accepted events are sent without waiting for each other's verdict, keyed by
listing on one idempotent producer, so a listing's events stay in file order; the
ledger's verdicts are collected at the end (admitted, refused with its reason, or
still undecided after `wait` s in which it ruled on none of them).

Safe to re-run after a crash. Each line's event id is deterministic (importfile), so
a line the ledger has ruled on is recognised and reported, never sent again. For the
lines a crashed run may have sent without the ledger having ruled yet, a journal
records, before they are sent, how far the run may have got: a re-run first waits
for the ledger's verdict on those lines, and sends again only what it still has not
seen after `wait` s of silence (what never reached the log).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message

from services.core.commands import AnyCommand
from services.core.connection import KafkaConnection
from services.core.errors import AccordError, BrokerUnavailable, RuleViolation
from services.core.events import ListingEvent, ListingState
from services.core.kafka import EventProducer
from services.core.listing import evolve
from services.core.sealing import Sealed
from services.core.settings import state_root
from services.publisher.client import Publisher
from services.publisher.errors import ledger_refusal
from services.publisher.importfile import Commands, Line, read_lines
from services.publisher.refusals import refusal_of

JOURNAL_STEP = 1000  # lines the journal runs ahead of what is sent: one write per so many lines
POLL_EVERY = 500  # lines between serving the producer's delivery reports


@dataclass(frozen=True)
class Sent:
    number: int
    agency: str
    listing_id: str
    event_id: str


@dataclass(frozen=True)
class Share:
    """The lines one of `of` processes of an import takes: those of its listings (by crc32), and,
    for the first, every line that names no listing (it reports them)."""

    index: int = 0
    of: int = 1

    def takes(self, listing_id: str | None) -> bool:
        if listing_id is None:
            return self.index == 0
        return self.of == 1 or zlib.crc32(listing_id.encode()) % self.of == self.index


class Journal:
    """How far the runs of one import may have sent (a file per share), so a re-run knows what to
    wait for, however many processes it runs with."""

    def __init__(self, folder: Path, name: str, share: Share) -> None:
        self.folder, self.name, self.share = folder, name, share
        self.path = folder / f"{name}.{share.index}.json"

    def mark(self) -> int:
        """Lines up to this number may have been sent by an earlier run (0: none)."""
        return max((_sent_through(p) for p in self.folder.glob(f"{self.name}.*.json")), default=0)

    def advance(self, through: int) -> None:
        """Record, durably and before they are sent, that lines up to `through` may be sent."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch = self.path.with_suffix(".tmp")
        with scratch.open("w") as out:
            out.write(json.dumps({"sent_through": through}))
            out.flush()
            os.fsync(out.fileno())
        scratch.replace(self.path)

    def clear(self) -> None:
        """This share is done; the first also drops what shares of a wider earlier run left."""
        self.path.unlink(missing_ok=True)
        for left in self.folder.glob(f"{self.name}.*.json") if self.share.index == 0 else ():
            if int(left.name.split(".")[-2]) >= self.share.of:
                left.unlink(missing_ok=True)


def _sent_through(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["sent_through"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):  # no journal, or one edited by hand
        return 0


@dataclass
class Report:
    """What became of every line: the document `accord publish import` prints."""

    import_id: str
    lines: int = 0
    published: int = 0  # sent by this run
    admitted: int = 0  # of those, admitted by the ledger
    already: int = 0  # recognised: published (and ruled on) by an earlier run
    refused: list[dict[str, Any]] = field(default_factory=list)
    undecided: list[dict[str, Any]] = field(default_factory=list)
    publish_s: float = 0.0
    publish_cpu_s: float = 0.0  # CPU time of the publish phase (all the processes' threads, summed)
    verdicts_s: float = 0.0

    def refuse(self, number: int, error: AccordError, listing_id: str | None) -> None:
        refusal = refusal_of(error)
        self.refused.append({"line": number, "code": refusal.code, "reason": refusal.reason,
                             "listing_id": listing_id})  # fmt: skip

    @classmethod
    def merged(cls, import_id: str, parts: Iterable[Report]) -> Report:
        """The report of an import run by several processes, from each one's."""
        whole = cls(import_id)
        for part in parts:
            whole.lines, whole.published = whole.lines + part.lines, whole.published + part.published
            whole.admitted, whole.already = whole.admitted + part.admitted, whole.already + part.already
            whole.refused.extend(part.refused)
            whole.undecided.extend(part.undecided)
            whole.publish_s, whole.verdicts_s = (
                max(whole.publish_s, part.publish_s),
                max(whole.verdicts_s, part.verdicts_s),
            )
            whole.publish_cpu_s += part.publish_cpu_s
        return whole

    def exit_code(self) -> int:
        """3 if any line was refused, else 8 if any is not decided yet, else 0 (as for one command)."""
        return 3 if self.refused else 8 if self.undecided else 0

    def document(self) -> dict[str, Any]:
        return {
            "import_id": self.import_id, "lines": self.lines, "published": self.published,
            "admitted": self.admitted, "already_published": self.already,
            "refused": len(self.refused), "undecided": len(self.undecided),
            "refusals": sorted(self.refused, key=lambda r: r["line"]),
            "undecided_lines": sorted(self.undecided, key=lambda r: r["line"]),
            "publish_s": round(self.publish_s, 3), "publish_cpu_s": round(self.publish_cpu_s, 3),
            "verdicts_s": round(self.verdicts_s, 3),
        }  # fmt: skip


class Importer:
    """One run of one import; `run` takes the file's lines (read afresh each time it is called)."""

    def __init__(
        self, publisher: Publisher, producer: EventProducer, commands: Callable[[], Commands],
        journal: Journal, wait: float,
    ) -> None:  # fmt: skip
        self._publisher, self._producer, self._commands = publisher, producer, commands
        self._journal, self._wait, self._share = journal, wait, journal.share
        self._states: dict[str, ListingState] = {}  # listings as this run's lines left them
        self._sent: list[Sent] = []
        self._sent_ids: set[str] = set()
        self._failed: dict[str, str] = {}  # event id -> why the broker did not take it
        self._delivered: set[str] = set()  # event ids the broker confirmed
        self._journaled = 0

    def run(
        self, lines: Callable[[], Iterable[Line]], report: Report, seen: Callable[[Line], None]
    ) -> Report:
        self._publisher.catch_up()
        mark = self._journal.mark()
        if mark:
            self._await(list(self._uncertain(lines(), mark)))
        self._journaled = mark
        start, cpu = time.perf_counter(), time.process_time()
        commands = self._commands()
        for line in lines():
            self._take(line, commands, report)
            seen(line)
        self._flush()
        report.publish_s = time.perf_counter() - start
        report.publish_cpu_s = time.process_time() - cpu
        self._await(self._sent)
        report.verdicts_s = time.perf_counter() - start - report.publish_s
        self._judge(report)
        if not report.undecided:
            self._journal.clear()
        return report

    # --- publishing ---------------------------------------------------------------------

    def _take(self, line: Line, commands: Commands, report: Report) -> None:
        command: AnyCommand | None = None
        try:
            command = commands.command(line)
            if not self._share.takes(command.listing_id):
                return
            report.lines += 1
            self._publisher.signer.signing_for(command.agency)  # never another agency's name
            if self._publisher.recognise(command) is not None:
                report.already += 1
                return
            if command.event_id in self._sent_ids:
                raise RuleViolation("request_id_reused", f"request_id {command.request_id} is an earlier "
                                    "line's; give each line its own (or none)")  # fmt: skip
            state = self._states.get(command.listing_id) or self._publisher.book.state(command.listing_id)
            sealed = self._publisher.prepare(command, state)
        except AccordError as e:
            if command is None:  # a line that names no listing: the first share reports it
                if not self._share.takes(None):
                    return
                report.lines += 1
            report.refuse(line.number, e, command.listing_id if command else None)
            return
        self._send(line.number, sealed)
        self._states[command.listing_id] = evolve(state, sealed.event)
        report.published += 1

    def _send(self, number: int, sealed: Sealed[ListingEvent]) -> None:
        if number > self._journaled:
            self._journaled = number + JOURNAL_STEP
            self._journal.advance(self._journaled)
        env = sealed.event.envelope
        topic = self._publisher.topics.listings(env.agency)
        delivered = self._on_delivery(env.event_id)
        self._producer.send(topic, env.listing_id, sealed.event, on_delivery=delivered, encoded=sealed.data)
        self._sent.append(Sent(number, env.agency, env.listing_id, env.event_id))
        self._sent_ids.add(env.event_id)
        if len(self._sent) % POLL_EVERY == 0:
            self._producer.poll(0)

    def _on_delivery(self, event_id: str) -> Callable[[KafkaError | None, Message], None]:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._failed[event_id] = err.str()
            else:
                self._delivered.add(event_id)

        return delivered

    def _flush(self) -> None:
        try:
            self._producer.flush()
        except BrokerUnavailable as e:  # what is still queued has not been confirmed
            self._producer.poll(0)
            for sent in self._sent:
                if sent.event_id not in self._delivered:
                    self._failed.setdefault(sent.event_id, str(e))

    # --- the ledger's verdicts ----------------------------------------------------------

    def _uncertain(self, lines: Iterable[Line], mark: int) -> Iterator[Sent]:
        """Lines up to `mark` the ledger has not ruled on: a crashed run may have sent them."""
        commands = self._commands()
        for line in lines:
            if line.number > mark:
                return
            try:
                command = commands.command(line)
            except AccordError:
                continue
            if not self._share.takes(command.listing_id):
                continue
            sent = Sent(line.number, command.agency, command.listing_id, command.event_id)
            if not self._ruled(sent):
                yield sent

    def _ruled(self, sent: Sent) -> bool:
        return self._publisher.decided(sent.agency, sent.listing_id, sent.event_id)

    def _await(self, sent: list[Sent]) -> None:
        """Until the ledger has ruled on all of `sent`, or on none of those left for `wait` s."""
        left = deque(s for s in sent if s.event_id not in self._failed)
        while left:
            if self._publisher.wait_for(partial(self._ruled, left[0]), self._wait):
                left.popleft()
                continue
            before = len(left)
            left = deque(s for s in left if not self._ruled(s))
            if len(left) == before:
                return

    def _judge(self, report: Report) -> None:
        book = self._publisher.book
        for sent in self._sent:
            if book.admitted(sent.listing_id, sent.event_id):
                report.admitted += 1
                continue
            refused = book.refusal(sent.agency, sent.listing_id, sent.event_id)
            if refused is not None:
                report.refuse(sent.number, ledger_refusal(refused.code, refused.reason, sent.event_id),
                              sent.listing_id)  # fmt: skip
                continue
            why = self._failed.get(sent.event_id, "the ledger has not ruled on it yet")
            report.undecided.append({"line": sent.number, "listing_id": sent.listing_id,
                                     "event_id": sent.event_id, "why": why})  # fmt: skip


def import_file(
    publisher: Publisher, producer: EventProducer, key: bytes, source: Source, wait: float,
    seen: Callable[[Line], None] = lambda line: None, share: Share = Share(),
) -> Report:  # fmt: skip
    """Import `share` of `source` as `publisher`'s agency; `seen` is told of every line (a progress bar)."""
    agency = publisher.signer.agency
    journal = Journal(state_root() / "imports", f"{agency}-{source.import_id}", share)
    importer = Importer(publisher, producer, lambda: Commands(key, source.import_id, agency), journal, wait)
    return importer.run(source.lines, Report(source.import_id), seen)


@dataclass(frozen=True)
class Source:
    """A file to import, in its format, under an import id (default: its content hash)."""

    path: Path
    fmt: str
    import_id: str

    def lines(self) -> Iterator[Line]:
        return read_lines(self.path, self.fmt)


def bulk_producer(connection: KafkaConnection, timeout: float, ce_source: str) -> EventProducer:
    """Core's idempotent acks=all producer, batching: a line's send never waits for another's."""
    timeout_ms = int(timeout * 1000)
    extra = {"linger.ms": 20, "queue.buffering.max.messages": 200_000, "message.timeout.ms": timeout_ms}
    return EventProducer(connection, ce_source, **extra)
