"""The operator page, rendered on the server from a `board.Snapshot`: plain HTML and inline SVG.

No script and no build step: the overview reloads itself every few seconds (a meta refresh),
the listing search is a plain GET form. Every value shown is escaped.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import quote

from services.reconciler.board import Case, CopyFigures, Snapshot, Times

REFRESH_S = 2
LABEL, ROW = 250, 22  # the chart's label column and row height, in pixels
STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5rem;color:#1d2430}
h1{font-size:1.3rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:1.4rem 0 .4rem}
table{border-collapse:collapse;min-width:40rem}td,th{padding:.25rem .6rem;border-bottom:1px solid #dde2ea;
text-align:left;vertical-align:top}th{background:#f2f4f8}.ok{color:#17693a}.bad{color:#b3261e;font-weight:600}
.muted{color:#6b7485}form{margin:.6rem 0}input{padding:.2rem .4rem}
"""


def page(title: str, body: str, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else ""
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>{meta}<title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")  # fmt: skip


def login(refusal: str = "") -> str:
    """The sign-in form: the reconciler's token, posted (never put in a URL), kept as a cookie."""
    said = f"<p class=refused>{escape(refusal)}</p>" if refusal else ""
    return page("Accord: sign in", f"<h1>Accord operator page</h1>{said}"
                "<form method=post action=/login><label>The reconciler's token "
                "(<code>accord auth issue --agency backbone --role reconciler</code>) "
                "<input type=password name=token autocomplete=off required></label> "
                "<button type=submit>Sign in</button></form>")  # fmt: skip


def search_form(value: str = "") -> str:
    field = f'<input name="listing_id" value="{escape(value)}" required>'
    return (
        f'<form action="listing" method="get"><label>Listing id {field}</label> <button>Show</button></form>'
    )


def overview(snap: Snapshot, now: datetime) -> str:
    taken = f"judged {_age(snap.taken_at, now)} ago" if snap.taken_at else "replaying the log"
    body = (f"<h1>Accord: the reconciler's view of every copy</h1><p class=muted>{snap.read} messages read, "
            f"{taken}; this page reloads every {REFRESH_S} s.</p>{search_form()}"
            f"<h2>Copies</h2>{copies_table(snap, now)}"
            f"<h2>Open findings ({len(snap.open)})</h2>{cases_table(snap.open, now, 'open-findings')}"
            f"<h2>Recently closed</h2>{cases_table(snap.closed, now, 'closed-findings')}"
            f"<h2>Time to consistency</h2>{chart(snap.times)}")  # fmt: skip
    return page("Accord operator page", body, refresh=True)


def copies_table(snap: Snapshot, now: datetime) -> str:
    wrong = {c.detection.copy_agency for c in snap.open}
    head = "<tr><th>copy</th><th>state</th><th>last applied</th><th>last digest</th><th>rows</th>" \
           "<th>behind (messages)</th><th>awaiting ack</th></tr>"  # fmt: skip
    return (
        f"<table id=copies>{head}{''.join(_copy_row(c, c.agency in wrong, now) for c in snap.copies)}</table>"
    )


def _copy_row(c: CopyFigures, wrong: bool, now: datetime) -> str:
    state = "<span class=bad>findings open</span>" if wrong else "<span class=ok>consistent</span>"
    if not wrong and c.last_applied is None and c.digest_at is None and not c.pending:
        state = "<span class=muted>no report yet</span>"
    cells = [escape(c.agency), state, _ago(c.last_applied, now), _ago(c.digest_at, now),
             "" if c.rows is None else str(c.rows), str(c.behind), str(c.pending)]  # fmt: skip
    return f'<tr data-agency="{escape(c.agency)}">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def cases_table(cases: list[Case], now: datetime, table_id: str) -> str:
    if not cases:
        return f"<p id={table_id} class=muted>none</p>"
    head = "<tr><th>kind</th><th>copy</th><th>listing</th><th>age</th><th>done</th><th>detail</th></tr>"
    return f"<table id={table_id}>{head}{''.join(_case_row(c, now) for c in cases)}</table>"


def _case_row(case: Case, now: datetime) -> str:
    f = case.detection
    lid = f.envelope.listing_id
    link = f'<a href="listing?listing_id={quote(lid)}">{escape(lid)}</a>' if lid else ""
    done = escape(case.done) + (
        f" after {_span(case.closed_at, f.since or f.detected_at)}" if case.closed_at else ""
    )
    cells = [escape(f.kind), escape(f.copy_agency), link, _age(f.detected_at, now), done, escape(f.detail)]
    return f'<tr data-listing="{escape(lid)}" data-done="{escape(case.done)}">' + \
        "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"  # fmt: skip


def chart(times: Times, width: int = 640) -> str:
    """p50 and p99 seconds per agency and kind of change, as horizontal bars (SVG)."""
    if not times:
        return "<p id=ttc class=muted>no change acknowledged yet</p>"
    top = max(s.p99 for s in times.values()) or 1.0
    height = ROW * len(times) + 24
    svg = f'<svg id=ttc xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">'
    parts = [svg, "<title>time to consistency per agency</title>", _text(0, -2, "blue: p50, pink: p99 (s)")]
    scale = (width - LABEL - 80) / top
    for i, ((agency, family), s) in enumerate(times.items()):
        y = 20 + i * ROW
        parts += [_text(0, y, f"{agency} · {family} ({s.count})"), _bar(y, s.p99 * scale, "#f3b6b0")]
        parts += [_bar(y, s.p50 * scale, "#2f6fde"), _text(width - 70, y, f"{s.p50:.2f} / {s.p99:.2f}")]
    return "".join([*parts, "</svg>"])


def _text(x: float, y: float, text: str) -> str:
    return f'<text x="{x}" y="{y + 12}" font-size="12">{escape(text)}</text>'


def _bar(y: float, length: float, colour: str) -> str:
    return f'<rect x="{LABEL}" y="{y}" width="{length:.1f}" height="14" fill="{colour}"/>'


def listing(listing_id: str, entries: list[tuple[datetime, str]], cases: list[Case], now: datetime) -> str:
    rows = "".join(f"<tr><td>{at.isoformat(timespec='milliseconds')}</td><td>{escape(text)}</td></tr>"
                   for at, text in entries)  # fmt: skip
    timeline = (f"<table id=timeline><tr><th>when</th><th>what</th></tr>{rows}</table>" if entries else
                "<p id=timeline class=muted>nothing read about this listing recently "
                "(`accord audit timeline` replays its whole history)</p>")  # fmt: skip
    body = (f'<p><a href="./">back to the overview</a></p><h1>Listing {escape(listing_id)}</h1>'
            f"{search_form(listing_id)}<h2>Open findings</h2>{cases_table(cases, now, 'open-findings')}"
            f"<h2>Timeline</h2>{timeline}")  # fmt: skip
    return page(f"Accord: listing {listing_id}", body)


def _age(then: datetime | None, now: datetime) -> str:
    return _span(now, then) if then else ""


def _ago(then: datetime | None, now: datetime) -> str:
    return f"{_span(now, then)} ago" if then else "<span class=muted>never</span>"


def _span(later: datetime | None, earlier: datetime | None) -> str:
    if later is None or earlier is None:
        return ""
    seconds = max(0.0, (later - earlier).total_seconds())
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
