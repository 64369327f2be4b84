"""How audit answers: aligned tables on a terminal, JSON or CSV for tools, a progress bar on stderr.

Every command builds a `Report` of named tables; rendering is one function per
format, so a table an operator reads and the JSON a script parses never differ in
content. CSV carries the report's first (primary) table only: one table per file
is what spreadsheet tools expect.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

import click

Format = Literal["text", "json", "csv"]
Row = dict[str, Any]


@dataclass(frozen=True)
class Table:
    """A titled table; `name` is its key in JSON."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: list[Row]
    text_columns: tuple[str, ...] | None = None  # the terminal's subset of `columns`, when narrower


@dataclass
class Report:
    """What a command found; `failed` makes the command exit non-zero after printing it."""

    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed: bool = False


def clock(value: datetime) -> str:
    """A UTC time a reader scans quickly: milliseconds, no timezone noise."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return clock(value)
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    return str(value)


def plain(value: Any) -> Any:
    """A JSON-ready value: ISO times, lists kept as lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def text_table(table: Table) -> str:
    columns = table.text_columns or table.columns
    cells = [[cell(row.get(c)) for c in columns] for row in table.rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [table.title, line.format(*columns).rstrip(), line.format(*("-" * w for w in widths))]
    out += [line.format(*r).rstrip() for r in cells] or ["(none)"]
    return "\n".join(out)


def csv_cell(value: Any) -> str:
    """Like a terminal cell, but times in full ISO form so tools parse them."""
    return value.isoformat() if isinstance(value, datetime) else cell(value)


def json_text(report: Report) -> str:
    body = {t.name: [{c: plain(r.get(c)) for c in t.columns} for r in t.rows] for t in report.tables}
    return json.dumps({**body, "notes": report.notes}, indent=2, ensure_ascii=False)


def csv_text(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([csv_cell(row.get(c)) for c in table.columns] for row in table.rows)
    return out.getvalue().rstrip("\n")


def render(report: Report, fmt: Format) -> str:
    if fmt == "json":
        return json_text(report)
    if fmt == "csv":
        return csv_text(report.tables[0])
    return "\n\n".join([*(text_table(t) for t in report.tables), "\n".join(report.notes)]).rstrip()


class ProgressBar:
    """A progress bar with events/s on stderr, shown only once a replay has run for more than a moment.

    Quick replays print nothing; slow ones show a bar on a terminal and, when done,
    one summary line (which is all a log file gets).
    """

    def __init__(self, label: str, total: int, delay: float = 1.0) -> None:
        self.label = label
        self.total = max(total, 1)
        self.delay = delay
        self.done = 0
        self.started = time.monotonic()
        self._bar: Any = None

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def __call__(self, count: int) -> None:
        self.done += count
        if self._bar is None and time.monotonic() - self.started > self.delay:
            self._bar = click.progressbar(
                length=self.total, label=self.label, file=sys.stderr, item_show_func=lambda s: s
            )
            self._bar.__enter__()
            count = self.done
        if self._bar is not None:
            self._bar.update(count, f"{self.rate():,.0f} events/s")

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is None:
            return
        self._bar.__exit__(kind, error, trace)
        elapsed = time.monotonic() - self.started
        summary = f"{self.label}: {self.done:,} events in {elapsed:.1f} s ({self.rate():,.0f} events/s)"
        click.echo(summary, err=True)
