"""Ledger: the faust-streaming worker that keeps the authoritative state of every listing.

Every decision is a pure function (handler.py) over a message and the listing's table
entry; the Faust app (app.py) only reads tables, calls it and sends what it returns.
Expiries are published as backbone-signed events (expiry.py); messages Faust skipped
are read again from the broker (refetch.py).
"""
