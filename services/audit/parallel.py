"""A replay spread over processes by partition number, each process's findings merged by the caller.

Every listing topic of a deployment has the same partition count and is keyed by listing
id, so all of a listing's events, on whichever topics, sit in partitions of one number
(the ledger refuses any other). A process that reads the partitions numbered k, k+N,
k+2N... of every topic therefore sees each listing it checks or folds whole, and the
shares' findings are disjoint: their union is the single process's answer.

Processes are spawned (never forked: a fork would copy librdkafka's threads and locks
mid-flight); each reports progress and its result through one queue, and a process that
dies without a report is an error, never a silent gap in the replay.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
from collections.abc import Callable, Iterable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from services.audit.replay import Meter
from services.core.connection import KafkaConnection
from services.core.errors import AccordError, ConfigurationError
from services.core.kafka import partition_counts

R = TypeVar("R")
Share = tuple[int, ...]
Work = Callable[[Share | None, Meter | None], R]
WAIT_S = 0.5


class ReplayFailed(AccordError):
    """A replay process failed or died; its share of the log was not read."""


def shares(connection: KafkaConnection, names: Iterable[str], processes: int) -> list[Share]:
    """The partition numbers each process reads: k, k+N, k+2N... of every topic in `names`."""
    counts = set(partition_counts(connection, names).values())
    if len(counts) > 1:
        raise ConfigurationError(f"topics differ in partition count {sorted(counts)}: use one process")
    count = counts.pop() if counts else 1
    return [tuple(range(k, count, processes)) for k in range(min(processes, count))]


def fan_out(work: Work[R], parts: Sequence[Share], meter: Meter | None = None) -> list[R]:
    """`work` run on each share in its own process (in this one, over every partition, if one share)."""
    if len(parts) <= 1:
        return [work(None, meter)]
    context = multiprocessing.get_context("spawn")
    reports: Any = context.Queue()
    running = [context.Process(target=_run, args=(work, part, n, reports)) for n, part in enumerate(parts)]
    for process in running:
        process.start()
    try:
        return _collect(running, reports, meter)
    finally:
        for process in running:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()


def _collect(running: Sequence[BaseProcess], reports: Any, meter: Meter | None) -> list[R]:
    results: dict[int, R] = {}
    while len(results) < len(running):
        try:
            kind, n, value = reports.get(timeout=WAIT_S)
        except queue.Empty:
            _dead(running, results)
            continue
        if kind == "meter" and meter is not None:
            meter(value)
        elif kind == "done":
            results[n] = pickle.loads(value)
        elif kind == "failed":
            raise value if isinstance(value, AccordError) else ReplayFailed(f"replay process {n}: {value}")
    return [results[n] for n in range(len(running))]


def _dead(running: Sequence[BaseProcess], results: dict[int, Any]) -> None:
    """Raise if a process exited with an error before reporting (killed, out of memory...)."""
    for n, process in enumerate(running):
        if n not in results and process.exitcode not in (None, 0):
            raise ReplayFailed(f"replay process {n} exited with {process.exitcode} before reporting")


def _run(work: Work[Any], part: Share, n: int, reports: Any) -> None:
    """One process's share: its result, or its error, goes to the parent."""

    def meter(count: int) -> None:
        reports.put(("meter", n, count))

    try:
        reports.put(("done", n, pickle.dumps(work(part, meter))))  # pickled here: a failure is raised here
    except AccordError as e:
        reports.put(("failed", n, e))
    except Exception as e:  # reported to the parent, which fails the whole replay with it
        reports.put(("failed", n, f"{type(e).__name__}: {e}"))
