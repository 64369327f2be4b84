"""`accord reconcile run --http HOST:PORT`: the operator page, served beside the running reconciler.

`GET /` is the overview (every copy's freshness and lag, open and recently closed findings,
time to consistency per agency as a chart), `GET /listing?listing_id=` a listing's timeline.
Both take the reconciler's bearer token (`accord auth issue --agency backbone --role
reconciler`): the page shows what the reconciler knows, so it is guarded like the reconciler's
own questions to the copies (`services.core.httpauth`: 401 without a token, 403 for another
principal). A browser signs in once at `GET /login` (the token typed into a form, never in a URL):
the answer keeps it in an HttpOnly, SameSite=Strict cookie (Secure behind https), which the page
accepts as it accepts the header; `POST /logout` forgets it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qs

import uvicorn
from fastapi import APIRouter, Cookie, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials

from services.core.credentials import CredentialStore, Principal
from services.core.errors import AccessDenied, Unauthenticated
from services.core.httpauth import AUTH_RESPONSES, Bearer, Guard, install
from services.core.topics import BACKBONE
from services.reconciler import page
from services.reconciler.board import Board

ROLE = "reconciler"
SESSION = "accord_page"  # the cookie that carries the token after `/login`
SESSION_S = 8 * 3600


def signed_in(guard: Guard) -> Callable[..., Principal]:
    """The guard, taking the token from the `Authorization` header or else from the sign-in cookie."""

    def principal(header: Bearer, session: Annotated[str | None, Cookie(alias=SESSION)] = None) -> Principal:
        if header is None and session:
            header = HTTPAuthorizationCredentials(scheme="Bearer", credentials=session)
        return guard(header)

    return principal


def build_page(board: Board, credentials: CredentialStore, clock: Callable[[], datetime]) -> FastAPI:
    app = FastAPI(title="Accord: operator page", docs_url=None, redoc_url=None, openapi_url=None)
    install(app)
    guard = Guard(credentials, ROLE, BACKBONE)
    guarded = APIRouter(dependencies=[Depends(signed_in(guard))], responses=AUTH_RESPONSES)

    @app.get("/login", response_class=HTMLResponse)
    def login_form() -> str:
        return page.login()

    @app.post("/login", response_class=HTMLResponse, response_model=None)
    async def login(request: Request) -> HTMLResponse | RedirectResponse:
        """Check the token like any request would; keep it only when it is the reconciler's."""
        token = parse_qs((await request.body()).decode(errors="replace")).get("token", [""])[0].strip()
        try:
            guard(HTTPAuthorizationCredentials(scheme="Bearer", credentials=token) if token else None)
        except AccessDenied as e:
            return HTMLResponse(
                page.login(e.message), status_code=401 if isinstance(e, Unauthenticated) else 403
            )
        answer = RedirectResponse("/", status_code=303)
        answer.set_cookie(SESSION, token, max_age=SESSION_S, httponly=True, samesite="strict",
                          secure=request.url.scheme == "https")  # fmt: skip
        return answer

    @app.post("/logout")
    def logout() -> RedirectResponse:
        answer = RedirectResponse("/login", status_code=303)
        answer.delete_cookie(SESSION)
        return answer

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
