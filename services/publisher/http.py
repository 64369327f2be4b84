"""The HTTP API over `Publisher` (FastAPI; OpenAPI at /docs and /openapi.json).

Every answer is documented with its body in the OpenAPI (a test drives the real
server from it and checks each answer against it):

| status | body    | when |
|--------|---------|------|
| 201    | Receipt | the ledger admitted the event (a recognised retry: same receipt, `duplicate: true`) |
| 202    | Receipt | in the log, not ruled on within the wait: `status: undecided`, see `ask_again` |
| 401    | Refused | no bearer token, or one never issued |
| 403    | Refused | another agency's or role's token, or a body naming another agency |
| 404    | Refused | unknown listing |
| 409    | Refused | the listing is no longer at `expected_version` (refused here or by the ledger) |
| 422    | Refused | refused by a rule (here or by the ledger), or a malformed or unparsable body |
| 503    | Refused | Kafka cannot be reached |
| 500    | Refused | the deployment is incomplete (no topics, no keys) |

Every route takes a bearer token of a clerk of the agency whose key this server holds:
401 without a valid one, 403 for another agency's or role's, and 403 `agency_mismatch`
for a body naming another agency than the credential's (both `Refused` bodies). The
dependency hangs on the app, so it covers every route, including any added later; the
verdict endpoint asks on behalf of the credential's agency.

Unparsable JSON is a 422 `invalid_command` like any other malformed command, never a 400.
Agencies, categories, measures and severities are enums in the OpenAPI, built from the
policy the server runs with.
Handlers are plain functions, so FastAPI runs them in its thread pool; `Publisher` is
thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from services.core import metrics
from services.core.commands import (
    AnyCommand,
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
from services.core.credentials import CredentialStore, FileCredentials, Principal
from services.core.errors import AccordError, UnknownListing
from services.core.events import ListingState
from services.core.health import Health, Progress
from services.core.httpauth import AUTH_RESPONSES, Bearer, Guard, Refused, acting_for, install, require
from services.core.policy import SEVERITY_TIERS, Policy
from services.publisher.client import Publisher
from services.publisher.errors import LedgerRefusal, Undecided
from services.publisher.refusals import Refusal, invalid, refusal_of
from services.publisher.settings import PublisherSettings
from services.publisher.state import Receipt

log = logging.getLogger("accord.publisher")


def _refusal(description: str) -> dict[str, Any]:
    return {"model": Refused, "description": description}


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


def create_app(settings: PublisherSettings, credentials: CredentialStore | None = None) -> FastAPI:
    """An app with its own `Publisher`, closed when the server stops; `credentials` default to the file."""
    publisher = Publisher.from_settings(settings)
    store = credentials or FileCredentials(settings.keys.credentials_file)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:  # read the ledger before accepting requests; each request reads on from where this got
            await asyncio.to_thread(publisher.catch_up)
        except AccordError as e:  # no Kafka or no topics yet: requests answer 503 with the reason
            log.warning("publisher serving before it could read the ledger: %s", e)
        yield
        publisher.close()

    app = FastAPI(
        title="Accord publisher",
        lifespan=lifespan,
        responses={**ERRORS, **AUTH_RESPONSES},
        dependencies=[Depends(_clerk)],  # every route, including any added later
    )
    app.state.publisher = publisher
    app.state.acting = acting = _Acting(publisher, settings.options.decision_wait_s * 3)
    app.state.clerks = require(store, "clerk", publisher.signer.agency)
    install(app)
    _answers(app)
    _routes(app, acting)
    app.openapi = lambda: _openapi(app, publisher.policy)  # type: ignore[method-assign]
    return app


def _clerk(request: Request, credentials: Bearer) -> Principal:
    """The caller, if a clerk of the agency whose key this server holds (else 401 or 403)."""
    guard: Guard = request.app.state.clerks
    return guard(credentials)


Caller = Annotated[Principal, Depends(_clerk)]


class _Acting:
    """The publisher, for the caller the credential names: a command of another agency is a 403.

    It also keeps the server's health: each verdict of the ledger heard (admitted or refused) is
    progress; commands left undecided since the last verdict are the work pending, so a ledger
    that stopped deciding makes `/health` a 503 once nothing was decided for `stall_after_s`."""

    def __init__(self, publisher: Publisher, stall_after_s: float) -> None:
        self.publisher = publisher
        self.progress = Progress("publisher", stall_after_s)
        self.undecided = 0  # commands left undecided since the ledger's last verdict
        self._lock = threading.Lock()  # handlers run in FastAPI's thread pool

    def submit(self, principal: Principal, command: AnyCommand) -> Receipt:
        try:
            acting_for(principal, command.agency)
            receipt = self.publisher.submit(command)
        except Undecided:
            self._handled("undecided")
            with self._lock:
                self.undecided += 1
            raise
        except AccordError as e:
            code = refusal_of(e).code
            self._handled("refused")
            metrics.EVENTS_REFUSED.labels("publisher", code).inc()
            if isinstance(e, LedgerRefusal):
                self._decided()
            raise
        self._handled("admitted")
        self._decided()
        return receipt

    def _handled(self, outcome: str) -> None:
        metrics.EVENTS_HANDLED.labels("publisher", outcome).inc()
        self.progress.count(**{outcome: 1})

    def _decided(self) -> None:
        with self._lock:
            self.undecided = 0
        self.progress.advance(decided=1)

    def health(self) -> Health:
        health = self.progress.judge(self.undecided)
        metrics.record(health, None)
        return health

    def current(self, listing_id: str) -> ListingState | None:
        return self.publisher.current(listing_id)

    def verdict(self, principal: Principal, listing_id: str, event_id: str) -> Receipt:
        """Asked about the credential's agency's events only: the one whose key this server holds."""
        acting_for(principal, self.publisher.signer.agency)
        receipt = self.publisher.verdict(listing_id, event_id)
        self._decided()  # the ledger ruled on it (a refusal raises, and is no sign of a stall either)
        return receipt


def _answers(app: FastAPI) -> None:
    """Errors into their documented answers: each a `Refused` body, an undecided event its receipt."""

    @app.exception_handler(Undecided)
    async def undecided(request: Request, error: Undecided) -> JSONResponse:
        receipt = error.receipt
        listing, event = (quote(part, safe="") for part in (receipt.listing_id, receipt.event_id))
        ask = f"/listings/{listing}/events/{event}"
        body = receipt.model_copy(update={"ask_again": ask}).model_dump(mode="json")
        return JSONResponse(body, status_code=202, headers={"Location": ask})

    @app.exception_handler(AccordError)
    async def refused(_: Request, error: AccordError) -> JSONResponse:
        return _answer(refusal_of(error))

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, error: RequestValidationError) -> JSONResponse:
        refusal = invalid(list(error.errors()))
        metrics.EVENTS_HANDLED.labels("publisher", "refused").inc()
        metrics.EVENTS_REFUSED.labels("publisher", refusal.code).inc()
        return _answer(refusal)


def _answer(refusal: Refusal) -> JSONResponse:
    return JSONResponse(refusal.body(), status_code=refusal.http_status)


def _routes(app: FastAPI, publisher: _Acting) -> None:
    @app.post("/listings", **COMMAND)
    def issue(command: IssueCommand, caller: Caller) -> Receipt:
        return publisher.submit(caller, command)

    @app.post("/listings/{listing_id}/corrections", **COMMAND)
    def correct(listing_id: str, body: CorrectRequest, caller: Caller) -> Receipt:
        return publisher.submit(caller, CorrectCommand(listing_id=listing_id, **dict(body)))

    @app.post("/listings/{listing_id}/revocations", **COMMAND)
    def revoke(listing_id: str, body: RevokeRequest, caller: Caller) -> Receipt:
        return publisher.submit(caller, RevokeCommand(listing_id=listing_id, **dict(body)))

    @app.post("/listings/{listing_id}/exemptions", **COMMAND)
    def exempt(listing_id: str, body: ExemptRequest, caller: Caller) -> Receipt:
        return publisher.submit(caller, ExemptCommand(listing_id=listing_id, **dict(body)))

    @app.post("/listings/{listing_id}/objections", **COMMAND)
    def object_(listing_id: str, body: ObjectRequest, caller: Caller) -> Receipt:
        return publisher.submit(caller, ObjectCommand(listing_id=listing_id, **dict(body)))

    @app.post("/listings/{listing_id}/objections/{objection_id}/resolution", **COMMAND)
    def resolve(listing_id: str, objection_id: str, body: ResolveRequest, caller: Caller) -> Receipt:
        command = ResolveCommand(listing_id=listing_id, objection_id=objection_id, **dict(body))
        return publisher.submit(caller, command)

    @app.get("/listings/{listing_id}", response_model=ListingState,
                responses={404: _refusal("unknown listing")})  # fmt: skip
    def show(listing_id: str) -> ListingState:
        state = publisher.current(listing_id)
        if state is None:
            raise UnknownListing("unknown_listing", f"no listing {listing_id} has been published")
        return state

    lost = _refusal("the ledger refused the event: it lost a race for its version")

    @app.get("/listings/{listing_id}/events/{event_id}", response_model=Receipt,
             responses={202: UNDECIDED, 409: lost})  # fmt: skip
    def verdict(listing_id: str, event_id: str, caller: Caller) -> Receipt:
        """The ledger's verdict on the caller's agency's event: 200 admitted, 202 not yet, 409/422 refused."""
        return publisher.verdict(caller, listing_id, event_id)


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
