"""`accord copy serve`: the front-line check over HTTP, beside the agency's copy.

`GET /check?subject_ref=` for callers that already hold the pseudonym; `POST /check`
with `{"national_id": ...}` for a desk that has the card (pseudonymised here, never
logged or stored); `GET /health` answers with the copy's freshness alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI
from pydantic import BaseModel, SecretStr

from services.copies.check import CheckAnswer, Freshness, answer, freshness
from services.core.copystore import CopyStore
from services.core.crypto import pseudonymise

Lag = Callable[[dict[int, int]], dict[int, int] | None]


class NationalId(BaseModel):
    national_id: SecretStr


def build_http(
    store: CopyStore, lag: Lag, sla_s: float, pseudonym_key: bytes, clock: Callable[[], datetime]
) -> FastAPI:
    app = FastAPI(title=f"Accord: copy of {store.agency}", docs_url=None, redoc_url=None)

    def check(subject_ref: str) -> CheckAnswer:
        return answer(store, subject_ref, lag(store.positions()), clock(), sla_s)

    @app.get("/check")
    def check_by_ref(subject_ref: str) -> CheckAnswer:
        return check(subject_ref)

    @app.post("/check")
    def check_by_id(body: NationalId) -> CheckAnswer:
        return check(pseudonymise(body.national_id.get_secret_value(), pseudonym_key))

    @app.get("/health")
    def health() -> Freshness:
        positions = store.positions()
        return freshness(positions, lag(positions), store.last_applied_at(), clock(), sla_s)

    return app
