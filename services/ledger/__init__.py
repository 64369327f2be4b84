"""Ledger: the faust-streaming worker that keeps the authoritative state of every listing.

Every decision is a pure function (handler.py) over a message and the listing's table
entry; the worker's steps (worker.py, wired to Faust's agents and timer by app.py) only
read tables, call it and send what it returns. The tables (tables.py) are never ahead of
the decisions the broker confirmed.
Expiries are published as backbone-signed events (expiry.py); messages Faust skipped
are read again from the broker (refetch.py).
"""
