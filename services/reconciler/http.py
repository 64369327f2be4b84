"""`accord reconcile run --http HOST:PORT`: the operator page, served beside the running reconciler.

`GET /` is the overview (every copy's freshness and lag, open and recently closed findings,
time to consistency per agency as a chart), `GET /listing?listing_id=` a listing's timeline.
Both take the reconciler's bearer token (`accord auth issue --agency backbone --role
reconciler`): the page shows what the reconciler knows, so it is guarded like the reconciler's
own questions to the copies (`services.core.httpauth`: 401 without a token, 403 for another
principal). A browser sends it as an `Authorization` header (a proxy or a header extension).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import HTMLResponse

from services.core.credentials import CredentialStore
from services.core.httpauth import AUTH_RESPONSES, install, require
from services.core.topics import BACKBONE
from services.reconciler import page
from services.reconciler.board import Board

ROLE = "reconciler"


def build_page(board: Board, credentials: CredentialStore, clock: Callable[[], datetime]) -> FastAPI:
    app = FastAPI(title="Accord: operator page", docs_url=None, redoc_url=None, openapi_url=None)
    install(app)
    guarded = APIRouter(
        dependencies=[Depends(require(credentials, ROLE, BACKBONE))], responses=AUTH_RESPONSES
    )

    @guarded.get("/", response_class=HTMLResponse)
    def overview() -> str:
        return page.overview(board.snapshot(), clock())

    @guarded.get("/listing", response_class=HTMLResponse)
    def listing(listing_id: str = Query(min_length=1, max_length=200)) -> str:
        cases = [c for c in board.snapshot().open if c.detection.envelope.listing_id == listing_id]
        return page.listing(listing_id, board.timeline(listing_id), cases, clock())

    app.include_router(guarded)
    return app


class PageServer:
    """Uvicorn in a thread of the reconciler's process; `close` stops it and waits."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, name="operator-page", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose, when asked for port 0); once `started`."""
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
