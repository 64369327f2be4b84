"""The shapes of the shared statements an adapter writes differently for a whole batch.

The copy's SQL (`batch.py`, `sql.py`) is written once, with `?` placeholders and one row per
`executemany` call; each adapter's cursor recognises these shapes and sends a batch of rows
in a few statements its driver runs well (PostgreSQL's COPY and arrays, SQLite's multi-row VALUES).
"""

from __future__ import annotations

import re

# `INSERT INTO table (columns) VALUES (?, …)` and what follows it (an ON CONFLICT clause, or nothing)
INSERT = re.compile(r"INSERT INTO (\w+) \(([\w, ]+)\) VALUES \([?, ]+\)(.*)", re.DOTALL)
# `… column IN (?, ?, …) …` whose only parameters are the list's
IN_LIST = re.compile(r"([^?]*) IN \((?:\?, )*\?\)([^?]*)", re.DOTALL)
# `DELETE FROM table WHERE key = ?` or `… WHERE key = ? AND other = ?`, repeated for many keys
DELETE = re.compile(r"DELETE FROM (\w+) WHERE (\w+) = \?(?: AND (\w+) = \?)?")
