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
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr

from services.copies.check import CheckAnswer, Freshness, answer, freshness
from services.core.copystore import CopyStore
from services.core.copystore.probe import Damage, Leaf, StoreProbe
from services.core.credentials import CredentialStore
from services.core.crypto import pseudonymise
from services.core.httpauth import AUTH_RESPONSES, install, require
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
    officer = Depends(require(credentials, "officer", store.agency))
    checks = APIRouter(dependencies=[officer], responses=AUTH_RESPONSES)

    def check(subject_ref: str) -> CheckAnswer:
        return answer(store, subject_ref, lag(store.positions()), clock(), sla_s)

    @checks.get("/check")
    def check_by_ref(subject_ref: str) -> CheckAnswer:
        return check(subject_ref)

    @checks.post("/check")
    def check_by_id(body: NationalId) -> CheckAnswer:
        return check(pseudonymise(body.national_id.get_secret_value(), pseudonym_key))

    app.include_router(checks)

    @app.get("/health", response_model=Freshness, responses={503: {"model": Freshness}})
    def health() -> JSONResponse:
        positions = store.positions()
        fresh = freshness(positions, lag(positions), store.last_applied_at(), clock(), sla_s)
        return JSONResponse(fresh.model_dump(mode="json"), status_code=503 if fresh.stale else 200)

    mount_probe(app, StoreProbe(store), credentials)
    return app


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
