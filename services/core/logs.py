"""How every service logs: plain lines by default, one JSON object per line on request.

`ACCORD_LOG_FORMAT=json` (or a service's `--log-json`) makes each record one line of JSON
with `time`, `level`, `logger`, `message`, the record's extra fields (`log.info(..., extra=)`)
and the traceback if any, for log shippers that parse rather than grep. The one function
`configure` sets up the root logger for all services; library loggers (Faust, uvicorn)
propagate to it, so their lines come out in the same format.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

TEXT = "%(asctime)s %(name)s %(levelname)s %(message)s"
# What every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
STANDARD |= {"color_message"}  # uvicorn's copy of the message with terminal colours


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        body.update({k: v for k, v in vars(record).items() if k not in STANDARD and not k.startswith("_")})
        if record.exc_info:
            body["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


_chosen: list[bool] = []  # what `configure` chose for this process, once it ran


def wants_json(flag: bool = False) -> bool:
    """Whether this process logs JSON: asked for now, chosen by `configure` or by the environment."""
    return flag or any(_chosen) or os.environ.get("ACCORD_LOG_FORMAT", "").strip().lower() == "json"


def handler(as_json: bool, text_format: str = TEXT) -> logging.Handler:
    """A stderr handler in the chosen format (for frameworks that take handlers, like Faust's worker)."""
    out = logging.StreamHandler(sys.stderr)
    out.setFormatter(JsonFormatter() if as_json else logging.Formatter(text_format))
    return out


def configure(level: int | str = logging.INFO, as_json: bool = False, text_format: str = TEXT) -> bool:
    """Route every logger to stderr in the requested format; returns whether it is JSON."""
    as_json = wants_json(as_json)
    _chosen[:] = [as_json]
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(as_json, text_format))
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.captureWarnings(as_json)  # a warning is a record too, not a stray line among the JSON
    return as_json
