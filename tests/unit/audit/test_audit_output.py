"""Rendering: the same report as an aligned table, JSON and CSV; progress only for slow replays."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.audit.output import ProgressBar, Report, Table, render
from services.audit.story import lag

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def report() -> Report:
    rows = [{"time": WHEN, "agency": "railway", "measures": ["flight_ban", "rail_ban"], "lag_s": 0.4}]
    table = Table("timeline", "Timeline", ("time", "agency", "measures", "lag_s"), rows, ("time", "agency"))
    second = Table("copies", "Copies", ("agency",), [])
    return Report([table, second], ["one note"])


def test_text_shows_the_terminal_columns_aligned_and_every_table() -> None:
    text = render(report(), "text").splitlines()
    assert text[:4] == [
        "Timeline",
        "time                     agency",
        "-----------------------  -------",
        "2026-01-02 03:04:05.678  railway",
    ]
    assert "(none)" in text and text[-1] == "one note"


def test_json_keeps_every_column_with_iso_times_and_lists() -> None:
    parsed = json.loads(render(report(), "json"))
    assert parsed["timeline"] == [
        {"time": WHEN.isoformat(), "agency": "railway", "measures": ["flight_ban", "rail_ban"], "lag_s": 0.4}
    ]
    assert parsed["copies"] == [] and parsed["notes"] == ["one note"]


def test_csv_is_the_primary_table_only() -> None:
    assert render(report(), "csv").splitlines() == [
        "time,agency,measures,lag_s",
        f'{WHEN.isoformat()},railway,"flight_ban, rail_ban",0.4',
    ]


def test_progress_is_silent_for_a_quick_replay_and_reports_a_slow_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with ProgressBar("quick", 10) as meter:
        meter(10)
    assert capsys.readouterr().err == ""
    with ProgressBar("slow", 10, delay=0.0) as meter:
        meter(4)
        meter(6)
    err = capsys.readouterr().err
    assert "slow: 10 events in" in err and "events/s" in err


def test_lags_read_at_a_glance() -> None:
    assert [lag(timedelta(seconds=s)) for s in (0.4, 190, 7200, 86400 * 3, 86400 * 800, -2)] == [
        "+0.4 s",
        "+3.2 min",
        "+2.0 h",
        "+3.0 d",
        "+2.2 y",
        "-2.0 s",
    ]
