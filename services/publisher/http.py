"""The HTTP API over `Publisher` (FastAPI; OpenAPI at /docs).

Every route takes a bearer token of a clerk of the agency whose key this server
holds (401 without a valid one, 403 for another agency's or role's); a body that
names another agency than the credential's is a 403 `agency_mismatch`.

201 with the receipt when the event is confirmed (a recognised retry answers the
same receipt with `duplicate: true`); 409 on a version conflict; 422 with
`{"code", "reason"}` on a rule violation or a malformed body; 404 for an unknown
listing; 503 when Kafka cannot be reached. Handlers are plain functions, so
FastAPI runs them in its thread pool; `Publisher` is thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

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
from services.core.httpauth import AUTH_RESPONSES, Bearer, Guard, acting_for, install, require
from services.publisher.client import Publisher
from services.publisher.refusals import Refusal, invalid, refusal_of
from services.publisher.settings import PublisherSettings
from services.publisher.state import Receipt

log = logging.getLogger("accord.publisher")
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown listing"},
    409: {"description": "the listing is no longer at expected_version: reload and decide again"},
    422: {"description": "refused by a rule, or malformed: {code, reason}"},
    503: {"description": "Kafka cannot be reached; nothing was published, retry with the same request_id"},
}


def _answer(refusal: Refusal) -> JSONResponse:
    return JSONResponse(refusal.body(), status_code=refusal.http_status)


def create_app(settings: PublisherSettings, credentials: CredentialStore | None = None) -> FastAPI:
    """An app with its own `Publisher`, closed when the server stops."""
    publisher = Publisher.from_settings(settings)
    store = credentials or FileCredentials(settings.keys.credentials_file)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:  # read the log before accepting requests; each request reads on from where this got
            await asyncio.to_thread(publisher.catch_up)
        except AccordError as e:  # no Kafka or no topics yet: requests answer 503 with the reason
            log.warning("publisher serving before it could read the log: %s", e)
        yield
        publisher.close()

    app = FastAPI(
        title="Accord publisher",
        lifespan=lifespan,
        responses={**REFUSALS, **AUTH_RESPONSES},
        dependencies=[Depends(_clerk)],  # every route, including any added later
    )
    app.state.publisher = publisher
    app.state.clerks = require(store, "clerk", publisher.signer.agency)
    install(app)

    @app.exception_handler(AccordError)
    async def refused(_: Request, error: AccordError) -> JSONResponse:
        return _answer(refusal_of(error))

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, error: RequestValidationError) -> JSONResponse:
        return _answer(invalid(list(error.errors())))

    _routes(app, _Acting(publisher))
    return app


def _clerk(request: Request, credentials: Bearer) -> Principal:
    """The caller, if a clerk of the agency whose key this server holds (else 401 or 403)."""
    guard: Guard = request.app.state.clerks
    return guard(credentials)


Caller = Annotated[Principal, Depends(_clerk)]


class _Acting:
    """The publisher, for the caller the credential names: a command of another agency is a 403."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def submit(self, principal: Principal, command: AnyCommand) -> Receipt:
        acting_for(principal, command.agency)
        return self.publisher.submit(command)

    def current(self, listing_id: str) -> ListingState | None:
        return self.publisher.current(listing_id)


def _routes(app: FastAPI, publisher: _Acting) -> None:
    created: dict[str, Any] = {"status_code": 201, "response_model": Receipt}

    @app.post("/listings", **created)
    def issue(command: IssueCommand, caller: Caller) -> Receipt:
        return publisher.submit(caller, command)

    @app.post("/listings/{listing_id}/corrections", **created)
    def correct(listing_id: str, body: CorrectRequest, caller: Caller) -> Receipt:
        return publisher.submit(caller, CorrectCommand(listing_id=listing_id, **dict(body)))

    @app.post("/listings/{listing_id}/revocations", **created)
    def revoke(listing_id: str, body: RevokeRequest, caller: Caller) -> Receipt:
        return publisher.submit(caller, RevokeCommand(listing_id=listing_id, **dict(body)))

    @app.post("/listings/{listing_id}/exemptions", **created)
    def exempt(listing_id: str, body: ExemptRequest, caller: Caller) -> Receipt:
        return publisher.submit(caller, ExemptCommand(listing_id=listing_id, **dict(body)))

    @app.post("/listings/{listing_id}/objections", **created)
    def object_(listing_id: str, body: ObjectRequest, caller: Caller) -> Receipt:
        return publisher.submit(caller, ObjectCommand(listing_id=listing_id, **dict(body)))

    @app.post("/listings/{listing_id}/objections/{objection_id}/resolution", **created)
    def resolve(listing_id: str, objection_id: str, body: ResolveRequest, caller: Caller) -> Receipt:
        command = ResolveCommand(listing_id=listing_id, objection_id=objection_id, **dict(body))
        return publisher.submit(caller, command)

    @app.get("/listings/{listing_id}", response_model=ListingState)
    def show(listing_id: str) -> ListingState:
        state = publisher.current(listing_id)
        if state is None:
            raise UnknownListing("unknown_listing", f"no listing {listing_id} has been published")
        return state


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory services.publisher.http:app_from_env`."""
    return create_app(PublisherSettings.from_env())
