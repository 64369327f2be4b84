"""Faust's own ceiling on this broker: an agent that reads the ledger's input and does nothing else.

    python benchmarks/ledger_noop.py EXPECTED REPORT.json     (the ledger's environment)

Built like the ledger's worker (`faust_app`, the same settings, topics, batches and acks, under
its own group so it reads from the start), it takes the listing topics in the ledger's batches
and acks each message, deciding nothing. Once it has read `EXPECTED` messages it writes, as
JSON, when it read its first and last and the CPU seconds it used in between, then idles until
stopped. `bench_ledger.py` runs it in the same run as the ledger, on the same topics.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import faust

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.ledger.app import RAW, faust_app
from services.ledger.layout import app_id
from services.ledger.settings import LedgerSettings
from services.ledger.worker import trust


def build(settings: LedgerSettings, expected: int, report: Path) -> faust.App:
    app = faust_app(settings, name=f"{app_id(settings.kafka)}-noop")
    authors = settings.kafka.topics.listing_authors(trust(settings)[0].issuers)
    source = app.topic(*sorted(authors), **RAW)
    read: list[float] = []  # count, first, last, CPU at first

    @app.agent(source, name="noop")
    async def noop(stream: faust.StreamT[bytes]) -> None:
        manual = stream.noack()  # type: ignore[attr-defined]
        count = 0
        async for events in manual.noack_take(
            settings.options.batch_size, within=settings.options.batch_wait_s
        ):
            if not read:
                read.extend([time.time(), time.process_time()])
            count += len(events)
            for event in events:
                await manual.ack(event)
            if count >= expected and not report.exists():
                first, cpu = read
                took = {
                    "events": count,
                    "first": first,
                    "last": time.time(),
                    "cpu": time.process_time() - cpu,
                }
                report.write_text(json.dumps(took))

    return app


def main() -> None:
    expected, report = int(sys.argv[1]), Path(sys.argv[2])
    settings = LedgerSettings.from_env(store="memory://")
    worker = faust.Worker(build(settings, expected, report), loglevel="warning", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
