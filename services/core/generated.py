"""The source of one generated Python function, as `avrowriter` and `avroreader` build theirs.

Each walks a schema once and emits the lines of a function that handles one record of it; values
the lines need (schemas' symbols, defaults) go in as named constants, and locals get fresh names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Source:
    """The lines of a function's body, the constants they name, and a counter for local names;
    `named` holds the schema's named types, by name."""

    named: dict[str, Any]
    lines: list[str] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)
    count: int = 0

    def local(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append(" " * depth + line)

    def constant(self, value: Any) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name
