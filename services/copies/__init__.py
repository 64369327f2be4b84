"""Copies: one sink per enforcing agency applies `views.<agency>` to the agency's own database.

The database holds the copy's position, so a restart neither loses nor repeats a change
(sink.py); front-line checks answer with how fresh the copy is (check.py, http.py); the
copy's server also answers the reconciler's probe questions (http.py).
"""
