"""Where a message sits in the log: topic, partition, offset.

A named tuple, so it is ordered, hashable, compares equal to the plain tuple and
serialises as a list (the ledger's table keeps positions as JSON lists).
"""

from __future__ import annotations

from typing import NamedTuple


class Position(NamedTuple):
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"
