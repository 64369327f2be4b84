"""The HTTP API over `Publisher` (FastAPI; OpenAPI at /docs and /openapi.json).

Every answer is documented with its body in the OpenAPI (a test drives the real
server from it and checks each answer against it):

| status | body    | when |
|--------|---------|------|
| 201    | Receipt | the ledger admitted the event (a recognised retry: same receipt, `duplicate: true`) |
| 202    | Receipt | in the log, not ruled on within the wait: `status: undecided`, see `ask_again` |
| 404    | Refusal | unknown listing |
| 409    | Refusal | the listing is no longer at `expected_version` (refused here or by the ledger) |
| 422    | Refusal | refused by a rule (here or by the ledger), or a malformed or unparsable body |
| 503    | Refusal | Kafka cannot be reached |
| 500    | Refusal | the deployment is incomplete (no topics, no keys) |

Unparsable JSON is a 422 `invalid_command` like any other malformed command, never a 400.
Agencies, categories, measures and severities are enums in the OpenAPI, built from the
policy the server runs with. Every route hangs off one router made with `dependencies`,
so a security dependency (a bearer token naming the agency) covers all of them at once.
Handlers are plain functions, so FastAPI runs them in its thread pool; `Publisher` is
thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.core.commands import (
    CorrectCommand,
    CorrectRequest,
    ExemptCommand,
    ExemptRequest,
    IssueCommand,
    ObjectCommand,
    ObjectRequest,
    ResolveCommand,
    ResolveRequest,
    RevokeCommand,
    RevokeRequest,
)
from services.core.errors import AccordError, UnknownListing
from services.core.events import ListingState
from services.core.policy import SEVERITY_TIERS, Policy
from services.publisher.client import Publisher
from services.publisher.errors import Undecided
from services.publisher.refusals import Refusal, invalid, refusal_of
from services.publisher.settings import PublisherSettings
from services.publisher.state import Receipt

log = logging.getLogger("accord.publisher")


class RefusalBody(BaseModel):
    """Every error answer: a stable, machine-readable code and a sentence a clerk can act on."""

    code: str
    reason: str


def _refusal(description: str) -> dict[str, Any]:
    return {"model": RefusalBody, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    422: _refusal("refused by a rule (here or by the ledger), or a malformed or unparsable body"),
    500: _refusal("the deployment is incomplete: no topics or no keys (the reason says which)"),
    503: _refusal("Kafka cannot be reached: retry with the same request_id (never admitted twice)"),
}
UNDECIDED = {
    "model": Receipt,
    "description": "in the log, not yet decided by the ledger: ask again at ask_again",
}
COMMAND: dict[str, Any] = {
    "status_code": 201,
    "response_model": Receipt,
    "responses": {
        202: UNDECIDED,
        404: _refusal("unknown listing"),
        409: _refusal("the listing is no longer at expected_version: reload it and decide again"),
    },
}
REQUEST_MODELS = ("IssueCommand", "CorrectRequest", "RevokeRequest", "ExemptRequest", "ObjectRequest",
                  "ResolveRequest", "Changes")  # fmt: skip


def create_app(settings: PublisherSettings, dependencies: Sequence[params.Depends] = ()) -> FastAPI:
    """An app with its own `Publisher`, closed when the server stops; `dependencies` guard every route."""
    publisher = Publisher.from_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:  # read the ledger before accepting requests; each request reads on from where this got
            await asyncio.to_thread(publisher.catch_up)
        except AccordError as e:  # no Kafka or no topics yet: requests answer 503 with the reason
            log.warning("publisher serving before it could read the ledger: %s", e)
        yield
        publisher.close()

    app = FastAPI(title="Accord publisher", lifespan=lifespan, responses=ERRORS)
    app.state.publisher = publisher
    _answers(app)
    router = APIRouter(dependencies=list(dependencies))
    _routes(router, publisher)
    app.include_router(router)
    app.openapi = lambda: _openapi(app, publisher.policy)  # type: ignore[method-assign]
    return app


def _answers(app: FastAPI) -> None:
    """Errors into their documented answers: each a `RefusalBody`, an undecided event its receipt."""

    @app.exception_handler(Undecided)
    async def undecided(request: Request, error: Undecided) -> JSONResponse:
        receipt = error.receipt
        listing, event, agency = (quote(part, safe="") for part in (receipt.listing_id, receipt.event_id,
                                                                        receipt.agency))  # fmt: skip
        ask = f"/listings/{listing}/events/{event}?agency={agency}"
        body = receipt.model_copy(update={"ask_again": ask}).model_dump(mode="json")
        return JSONResponse(body, status_code=202, headers={"Location": ask})

    @app.exception_handler(AccordError)
    async def refused(_: Request, error: AccordError) -> JSONResponse:
        return _answer(refusal_of(error))

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, error: RequestValidationError) -> JSONResponse:
        return _answer(invalid(list(error.errors())))


def _answer(refusal: Refusal) -> JSONResponse:
    return JSONResponse(refusal.body(), status_code=refusal.http_status)


def _routes(router: APIRouter, publisher: Publisher) -> None:
    @router.post("/listings", **COMMAND)
    def issue(command: IssueCommand) -> Receipt:
        return publisher.submit(command)

    @router.post("/listings/{listing_id}/corrections", **COMMAND)
    def correct(listing_id: str, body: CorrectRequest) -> Receipt:
        return publisher.submit(CorrectCommand(listing_id=listing_id, **dict(body)))

    @router.post("/listings/{listing_id}/revocations", **COMMAND)
    def revoke(listing_id: str, body: RevokeRequest) -> Receipt:
        return publisher.submit(RevokeCommand(listing_id=listing_id, **dict(body)))

    @router.post("/listings/{listing_id}/exemptions", **COMMAND)
    def exempt(listing_id: str, body: ExemptRequest) -> Receipt:
        return publisher.submit(ExemptCommand(listing_id=listing_id, **dict(body)))

    @router.post("/listings/{listing_id}/objections", **COMMAND)
    def object_(listing_id: str, body: ObjectRequest) -> Receipt:
        return publisher.submit(ObjectCommand(listing_id=listing_id, **dict(body)))

    @router.post("/listings/{listing_id}/objections/{objection_id}/resolution", **COMMAND)
    def resolve(listing_id: str, objection_id: str, body: ResolveRequest) -> Receipt:
        return publisher.submit(
            ResolveCommand(listing_id=listing_id, objection_id=objection_id, **dict(body))
        )

    @router.get("/listings/{listing_id}", response_model=ListingState,
                responses={404: _refusal("unknown listing")})  # fmt: skip
    def show(listing_id: str) -> ListingState:
        state = publisher.current(listing_id)
        if state is None:
            raise UnknownListing("unknown_listing", f"no listing {listing_id} has been published")
        return state

    lost = _refusal("the ledger refused the event: it lost a race for its version")

    @router.get("/listings/{listing_id}/events/{event_id}", response_model=Receipt,
                responses={202: UNDECIDED, 409: lost})  # fmt: skip
    def verdict(listing_id: str, event_id: str, agency: str) -> Receipt:
        """The ledger's verdict on an event: 200 admitted, 202 not decided yet, 409/422 refused."""
        return publisher.verdict(agency, listing_id, event_id)


def _openapi(app: FastAPI, policy: Policy) -> dict[str, Any]:
    """FastAPI's document, with the policy's agencies, categories, measures and severities as enums."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        enums = {
            "agency": sorted(policy.issuers),
            "category": sorted(policy.category_by_code),
            "measure": sorted(policy.measure_by_code),
            "measures": sorted(policy.measure_by_code),
            "severity": list(SEVERITY_TIERS),
        }
        components = schema.get("components", {}).get("schemas", {})
        for name in REQUEST_MODELS:
            for field, prop in components.get(name, {}).get("properties", {}).items():
                if field in enums:
                    _enumerate(prop, enums[field])
        for path in schema["paths"].values():
            for operation in path.values():
                for parameter in operation.get("parameters", []):
                    if parameter["name"] in enums:
                        _enumerate(parameter["schema"], enums[parameter["name"]])
        app.openapi_schema = schema
    return app.openapi_schema


def _enumerate(prop: dict[str, Any], values: list[str]) -> None:
    """Make a string (or list of strings, or either or null) property take only `values`."""
    for variant in prop.get("anyOf", [prop]):
        if variant.get("type") == "string":
            variant["enum"] = values
        elif variant.get("type") == "array":
            variant["items"] = {"type": "string", "enum": values}


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory services.publisher.http:app_from_env`."""
    return create_app(PublisherSettings.from_env())
