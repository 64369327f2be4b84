"""`accord copy serve` in one process or in several workers sharing the port (uvicorn `workers`).

Checks are answered by Python code, so one process uses one core at most; with `--workers N`
uvicorn starts N processes that accept on the same socket, each opening the copy (SQLite in WAL
mode reads side by side; PostgreSQL is a connection per worker) and its own lag reader. A worker
is started by import, so the copy it serves is handed over in the environment.

Every connection has Nagle's algorithm off (`NoDelay`): uvicorn binds the workers' shared socket
itself with protocol number 0, and asyncio turns TCP_NODELAY on only for accepted sockets that
say IPPROTO_TCP, so with `--workers 2` each answer (its headers, then its body: two writes) waited
for the client's delayed ACK of the headers: 44 ms a check, measured (uvicorn issue 3149, open).

The HTTP parser is httptools and the event loop uvloop (C, both): with h11 and asyncio uvicorn's
own handling of a request cost several times the check. Checks are not access-logged unless asked
(`access_log`): a log line a check cost about a quarter of the server's CPU.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.copies.http import FrontLine, build_http
from services.copies.lag import ViewLag
from services.copies.settings import CopySettings
from services.core.clock import utc_now
from services.core.copystore import open_store
from services.core.credentials import FileCredentials

AGENCY_VARIABLE, STORE_VARIABLE = "ACCORD_COPY_SERVE_AGENCY", "ACCORD_COPY_STORE"


class NoDelay(HttpToolsProtocol):
    """uvicorn's HTTP protocol, with every response segment sent as soon as it is written."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


@contextmanager
def served(agency: str, url: str) -> Iterator[FrontLine]:
    """The HTTP app of `agency`'s copy at `url`, with what it holds open closed afterwards."""
    settings = CopySettings.from_env()
    options = settings.options
    with ExitStack() as stack:
        store = open_store(url, agency)
        stack.callback(store.close)
        lag = ViewLag(settings.kafka.connection, settings.kafka.topics.views(agency), options.lag_timeout_s,
                      options.lag_max_age_s)  # fmt: skip
        stack.callback(lag.close)
        key = settings.secrets.pseudonym_key.get_secret_value().encode()
        credentials = FileCredentials(settings.keys.credentials_file)
        yield build_http(store, lag, options.sla_s, key, utc_now, credentials)


def worker_app() -> FrontLine:
    """One worker's app (uvicorn imports it): the copy named in the environment, open until exit."""
    stack = ExitStack()
    atexit.register(stack.close)
    return stack.enter_context(served(os.environ[AGENCY_VARIABLE], os.environ[STORE_VARIABLE]))


def serve(
    agency: str,
    url: str,
    host: str,
    port: int,
    workers: int,
    log_config: dict[str, Any] | None,
    access_log: bool = False,
) -> None:
    """Serve until stopped; `log_config` None leaves logging as `core.logs` configured it (JSON)."""
    options: dict[str, Any] = {"host": host, "port": port, "log_config": log_config, "loop": "uvloop",
                               "access_log": access_log}  # fmt: skip
    if workers == 1:
        with served(agency, url) as app:
            uvicorn.run(app, http=NoDelay, **options)
        return
    with served(agency, url):  # open once here first, so a bad store or agency fails before any worker
        pass
    os.environ[AGENCY_VARIABLE], os.environ[STORE_VARIABLE] = agency, url
    factory, protocol = f"{__name__}:worker_app", f"{__name__}:NoDelay"
    uvicorn.run(factory, factory=True, workers=workers, http=protocol, **options)
