"""The operations endpoint of a service: `GET /health` (200 or 503, with the facts) and `GET /metrics`.

Every long-running service (ledger, copy sink, reconciler, publisher server) serves them on
`--ops HOST:PORT` (or `ACCORD_OPS_ADDR`) from a small `http.server` in a daemon thread, apart
from its API: the publisher's API guards every route with a clerk's token, these two are open
(no personal data in either) for probes and Prometheus.
Each request judges health afresh (the caller's `judge` measures lag then), and a scrape
of `/metrics` judges first, so the lag and `accord_healthy` it shows are current.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.core import metrics  # noqa: F401  (declares every accord_* family: each /metrics lists all)
from services.core.errors import ConfigurationError
from services.core.health import Health

Judge = Callable[[], Health]
OPS = click.option("--ops", envvar="ACCORD_OPS_ADDR", metavar="HOST:PORT",
                   help="serve GET /health and /metrics there (env ACCORD_OPS_ADDR)")  # fmt: skip
LOG_JSON = click.option("--log-json", is_flag=True,
                        help="log one JSON object per line (env ACCORD_LOG_FORMAT=json)")  # fmt: skip
log = logging.getLogger("accord.ops")


def address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT`, on 127.0.0.1) as a socket address; a bad one is a clear error."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"ops address {text!r}: write HOST:PORT, e.g. 127.0.0.1:9464")
    return host or "127.0.0.1", int(port)


def answer(path: str, judge: Judge) -> tuple[int, str, bytes]:
    """Status, content type and body of `path`: the one logic of both kinds of server."""
    if path == "/health":
        health = judge()
        return health.status_code, "application/json", json.dumps(health.body(), default=str).encode()
    if path == "/metrics":
        judge()
        return 200, CONTENT_TYPE_LATEST, generate_latest()
    return 404, "text/plain", b"not found: /health or /metrics\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A scraper that gave up and hung up is not worth a traceback among the service's logs."""
        log.debug("ops request from %s failed: %r", client_address, sys.exc_info()[1])


class OpsServer:
    """`/health` and `/metrics` on their own port, in a daemon thread; `close` stops it."""

    def __init__(self, where: str, judge: Judge) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                try:
                    status, kind, body = answer(self.path.split("?")[0], judge)
                except Exception:  # a failing judgement is an unhealthy answer, never a dead endpoint
                    log.exception("ops endpoint failed to answer %s", self.path)
                    status, kind, body = 503, "text/plain", b"health could not be judged\n"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
                pass

        try:
            self.server = _Server(address(where), Handler)
        except OSError as e:  # taken, or not an address of this host: say which, do not start half-blind
            raise ConfigurationError(f"cannot serve /health and /metrics on {where}: {e}") from e
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="ops", daemon=True)
        self.thread.start()
        log.info("ops endpoint on %s:%d (/health, /metrics)", self.server.server_address[0], self.port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_ops(where: str | None, judge: Judge) -> OpsServer | None:
    """The ops endpoint when an address is given; None (nothing served) when not."""
    return OpsServer(where, judge) if where else None
