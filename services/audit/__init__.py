"""Audit: operators replay the log to learn who decided what, when each copy knew it, and whether
history was tampered with (`accord audit timeline | state-at | verify | rebuild`).

Replays read in batches up to the high watermarks seen at start (replay.py), re-run the
ledger's fold (fold.py) and print tables, JSON or CSV (output.py, tables.py).
"""
