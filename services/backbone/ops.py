"""Each supervised service's ops endpoint (`--ops`): an address chosen at `up`, asked by `status`.

Supervision says whether a process runs; its `/health` says whether it makes progress
(`services/core/health.py`). `up` gives every service a loopback port of its own (one shared
`ACCORD_OPS_ADDR` would collide) and records them, so `status` shows both side by side and
Prometheus can scrape the same addresses (`/metrics`). The ports are picked below the kernel's
ephemeral range, so no outgoing connection takes one between the choice and a restart.
"""

from __future__ import annotations

import json
import random
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OPS_FILE = "ops.json"
LOW, HIGH = 20000, 32000  # below the ephemeral range (32768 up on Linux)


def assign(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """A free loopback port per service, recorded in `folder` for `status`."""
    taken: set[int] = set()
    addresses = {}
    for name in names:
        port = _free_port(taken)
        taken.add(port)
        addresses[name] = f"127.0.0.1:{port}"
    (folder / OPS_FILE).write_text(json.dumps(addresses, indent=1))
    return addresses


def recorded(folder: Path) -> dict[str, str]:
    """The addresses `up` chose (none if it never ran here, or the file is not ours to trust)."""
    try:
        found = json.loads((folder / OPS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items() if str(v).startswith("127.0.0.1:")}


def health_of(address: str, timeout: float = 2.0) -> dict[str, Any]:
    """What the service's `/health` answers: healthy or not, the reasons and the facts."""
    try:
        with urllib.request.urlopen(f"http://{address}/health", timeout=timeout) as answer:
            return _body(answer.read(), healthy=True)
    except urllib.error.HTTPError as e:  # 503: making no progress, or behind its SLA; it says why
        return _body(e.read(), healthy=False)
    except (OSError, ValueError) as e:
        return {"healthy": False, "reasons": [f"no answer on {address}: {e}"]}


def _body(raw: bytes, healthy: bool) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return {"reasons": [], **body, "healthy": healthy and bool(body.get("healthy", True))}


def _free_port(taken: set[int], attempts: int = 200) -> int:
    for _ in range(attempts):
        port = random.randint(LOW, HIGH)
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise OSError(f"no free port for an ops endpoint in {attempts} attempts")
