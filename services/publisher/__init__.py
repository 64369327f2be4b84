"""The agencies' way in: commands checked against the law, sealed, and published exactly once.

`Publisher` (client.py) is the one code path; `cli.py` and `http.py` are thin
interfaces over it. See client.py for how the current version is decided.
"""
