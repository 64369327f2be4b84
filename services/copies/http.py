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
by pydantic, not validated again on the way out. `GET /check`, the hot path, is a plain
Starlette route placed before FastAPI's declaration of it, which documents it (OpenAPI) and
answers the same way: FastAPI's per-request dependency solving cost twice the check itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, SecretStr
from starlette.routing import Route

from services.copies.check import CheckAnswer, Freshness, answer, freshness, unreadable
from services.core.copystore import CopyStore, StoreError
from services.core.copystore.probe import Damage, Leaf, StoreProbe
from services.core.credentials import CredentialStore, Principal
from services.core.crypto import pseudonymise
from services.core.httpauth import AUTH_RESPONSES, Bearer, Guard, bearer, install, require
from services.core.topics import BACKBONE

Lag = Callable[[dict[int, int]], dict[int, int] | None]
Bucket = Annotated[int, Query(ge=0, description="bucket number in a `size`-bucket split")]
Size = Annotated[int, Query(gt=0, description="how many buckets the split has")]
T = TypeVar("T")


class NationalId(BaseModel):
    national_id: SecretStr


def build_http(
    store: CopyStore,
    lag: Lag,
    sla_s: float,
    pseudonym_key: bytes,
    clock: Callable[[], datetime],
    credentials: CredentialStore,
) -> FastAPI:
    app = FastAPI(title=f"Accord: copy of {store.agency}", docs_url=None, redoc_url=None)
    install(app)
    guard = require(credentials, "officer", store.agency)
    checks = APIRouter(dependencies=[Depends(on_loop(guard))], responses=AUTH_RESPONSES)

    def check(subject_ref: str) -> Response:
        try:
            positions = store.positions()
        except StoreError as e:  # a copy that cannot be read still answers, as `answer` does
            found = unreadable(store.agency, subject_ref, clock(), str(e))
        else:
            found = answer(store, subject_ref, lag(positions), clock(), sla_s, positions)
        return Response(found.model_dump_json(), media_type="application/json")

    @checks.get("/check", response_model=CheckAnswer)
    async def check_by_ref(subject_ref: str) -> Response:
        return check(subject_ref)

    async def served_check(request: Request) -> Response:
        """`check_by_ref`, served without FastAPI's dependency solving (the same guard, the same 422)."""
        guard(await bearer(request))
        subject_ref = request.query_params.get("subject_ref")
        if subject_ref is None:
            raise RequestValidationError([MISSING_SUBJECT])
        return check(subject_ref)

    @checks.post("/check", response_model=CheckAnswer)
    async def check_by_id(body: NationalId) -> Response:
        return check(pseudonymise(body.national_id.get_secret_value(), pseudonym_key))

    app.include_router(checks)
    app.router.routes.insert(0, Route("/check", served_check, methods=["GET"]))

    @app.get("/health", response_model=Freshness, responses={503: {"model": Freshness}})
    def health() -> JSONResponse:
        positions = store.positions()
        fresh = freshness(positions, lag(positions), store.last_applied_at(), clock(), sla_s)
        return JSONResponse(fresh.model_dump(mode="json"), status_code=503 if fresh.stale else 200)

    mount_probe(app, StoreProbe(store), credentials)
    return app


MISSING_SUBJECT = {"type": "missing", "loc": ("query", "subject_ref"), "msg": "Field required", "input": None}


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
