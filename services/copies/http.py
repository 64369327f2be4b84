"""`accord copy serve`: the front-line check over HTTP, beside the agency's copy.

`GET /check?subject_ref=` for callers that already hold the pseudonym; `POST /check`
with `{"national_id": ...}` for a desk that has the card (pseudonymised here, never
logged or stored); `GET /health` answers with the copy's freshness alone: 200 when it
is fresh, 503 when it is behind its SLA or its lag cannot be measured (a load balancer or
supervisor then sees what an officer would be told).

`GET /probe/digest | sub-digest | leaves | positions | misplaced | damaged` answer the reconciler's questions
(`CopyProbe`): bucket hashes, per-listing (version, status, row hash) and positions,
no personal data, so the reconciler needs no credentials for the agency's database.

`/check` answers only a bearer token of an officer of this copy's agency, `/probe/*`
only the reconciler's (`services.core.httpauth`: 401 without a valid token, 403 for
another principal); `/health` is open.

A check runs on the event loop, start to end: its guard (a hash and a file's stat) and its
reads (indexed, well under a millisecond) are cheaper than the hop to a worker thread that
FastAPI makes for a synchronous route or dependency, and the answer is rendered to JSON once,
by pydantic, not validated again on the way out. `GET /check`, the hot path, is answered in
front of FastAPI (`FrontLine`) when it names a subject and carries a token the guard accepts;
any other request, a refused or malformed check included, goes to the FastAPI app, whose
declaration of the route documents it (OpenAPI) and gives the 401, 403 and 422 answers.
FastAPI's middleware, routing and dependency solving cost more than the check itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, SecretStr

from services.copies.check import CheckAnswer, Freshness, answer, freshness, unreadable
from services.core.copystore import CopyStore, StoreError
from services.core.copystore.probe import Damage, Leaf, StoreProbe
from services.core.credentials import CredentialStore, Principal
from services.core.crypto import pseudonymise
from services.core.errors import AccessDenied
from services.core.httpauth import AUTH_RESPONSES, Bearer, Guard, install, require
from services.core.topics import BACKBONE

Lag = Callable[[dict[int, int]], dict[int, int] | None]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Bucket = Annotated[int, Query(ge=0, description="bucket number in a `size`-bucket split")]
Size = Annotated[int, Query(gt=0, description="how many buckets the split has")]
T = TypeVar("T")


class NationalId(BaseModel):
    national_id: SecretStr


class FrontLine:
    """The copy's ASGI app: `GET /check` of an accepted officer answered here, the rest by `app`.

    Only a request the FastAPI route would answer with a check is answered here, and in the same
    bytes; one it would refuse (no subject, no token, a token of another agency or role) is handed
    to it, so every refusal keeps one definition."""

    def __init__(self, app: FastAPI, guard: Guard, check: Callable[[str], bytes]) -> None:
        self.app, self.guard, self.check = app, guard, check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self._answer(scope) if scope["type"] == "http" and scope["path"] == "/check" else None
        if body is None:
            return await self.app(scope, receive, send)
        headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _answer(self, scope: Scope) -> bytes | None:
        """The check's JSON, or None when the FastAPI route is to answer (or refuse) instead."""
        if scope["method"] != "GET":
            return None
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        token = _bearer(scope["headers"])
        if "subject_ref" not in query or token is None:
            return None
        try:
            self.guard(HTTPAuthorizationCredentials(scheme="Bearer", credentials=token))
        except AccessDenied:
            return None
        return self.check(query["subject_ref"])


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer` header, as FastAPI's `HTTPBearer` reads it."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            return token.strip()
    return None


def build_http(
    store: CopyStore,
    lag: Lag,
    sla_s: float,
    pseudonym_key: bytes,
    clock: Callable[[], datetime],
    credentials: CredentialStore,
) -> FrontLine:
    app = FastAPI(title=f"Accord: copy of {store.agency}", docs_url=None, redoc_url=None)
    install(app)
    guard = require(credentials, "officer", store.agency)
    checks = APIRouter(dependencies=[Depends(on_loop(guard))], responses=AUTH_RESPONSES)

    def check(subject_ref: str) -> bytes:
        try:
            positions = store.positions()
        except StoreError as e:  # a copy that cannot be read still answers, as `answer` does
            found = unreadable(store.agency, subject_ref, clock(), str(e))
        else:
            found = answer(store, subject_ref, lag(positions), clock(), sla_s, positions)
        return found.__pydantic_serializer__.to_json(found)

    @checks.get("/check", response_model=CheckAnswer)
    async def check_by_ref(subject_ref: str) -> Response:
        return Response(check(subject_ref), media_type="application/json")

    @checks.post("/check", response_model=CheckAnswer)
    async def check_by_id(body: NationalId) -> Response:
        ref = pseudonymise(body.national_id.get_secret_value(), pseudonym_key)
        return Response(check(ref), media_type="application/json")

    app.include_router(checks)

    @app.get("/health", response_model=Freshness, responses={503: {"model": Freshness}})
    def health() -> JSONResponse:
        positions = store.positions()
        fresh = freshness(positions, lag(positions), store.last_applied_at(), clock(), sla_s)
        return JSONResponse(fresh.model_dump(mode="json"), status_code=503 if fresh.stale else 200)

    mount_probe(app, StoreProbe(store), credentials)
    return FrontLine(app, guard, check)


def on_loop(guard: Guard) -> Callable[[Bearer], Awaitable[Principal]]:
    """`guard` as a coroutine dependency, so FastAPI calls it on the event loop, not in a thread."""

    async def principal(credentials: Bearer) -> Principal:
        return guard(credentials)

    return principal


def mount_probe(app: FastAPI, probe: StoreProbe, credentials: CredentialStore) -> None:
    """The reconciler's questions, answered from the copy's own rows; a split it cannot serve is a 422."""
    reconciler = Depends(require(credentials, "reconciler", BACKBONE))
    router = APIRouter(prefix="/probe", dependencies=[reconciler], responses=AUTH_RESPONSES)

    @router.get("/digest")
    def digest() -> list[str]:
        return probe.digest()

    @router.get("/sub-digest")
    def sub_digest(bucket: Bucket, size: Size, fanout: int = Query(gt=1)) -> list[str]:
        return _answer(lambda: probe.sub_digest(bucket, size, fanout))

    @router.get("/leaves")
    def leaves(bucket: Bucket, size: Size) -> dict[str, Leaf]:
        return _answer(lambda: probe.leaves(bucket, size))

    @router.get("/positions")
    def positions() -> dict[int, int]:
        return probe.positions()

    @router.get("/misplaced")
    def misplaced() -> dict[str, Leaf]:
        return probe.misplaced()

    @router.get("/damaged")
    def damaged() -> dict[str, Damage]:
        return probe.damaged()

    app.include_router(router)


def _answer(question: Callable[[], T]) -> T:
    try:
        return question()
    except ValueError as e:
        raise HTTPException(status_code=422, detail=str(e)) from e
