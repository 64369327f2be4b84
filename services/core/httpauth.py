"""Bearer-token authentication for Accord's HTTP servers (the publisher's and the copies').

`require(store, role, agency)` is a FastAPI dependency: no token, or one nobody
issued, is a 401 with `WWW-Authenticate: Bearer`; a known principal of another role or
agency is a 403. Both answer `{"code", "reason"}`. The dependency is built on FastAPI's
`HTTPBearer`, so OpenAPI names the security scheme on every route that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from services.core.credentials import CredentialStore, Principal
from services.core.errors import AccessDenied, Forbidden, Unauthenticated

SCHEME = "accordBearer"
bearer = HTTPBearer(
    auto_error=False,
    scheme_name=SCHEME,
    description="a token from `accord auth issue --agency A --role clerk|officer|reconciler`",
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class Refused(BaseModel):
    """Why a request was not served: a stable code and a sentence."""

    code: str
    reason: str


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Refused, "description": "no bearer token, or one that was never issued"},
    403: {
        "model": Refused,
        "description": "a valid token of another agency or role, or a body naming another agency",
    },
}


@dataclass(frozen=True)
class Guard:
    """A dependency answering the caller's principal, if it is `role` (of `agency`, when given)."""

    store: CredentialStore
    role: str
    agency: str | None = None

    def __call__(self, credentials: Bearer) -> Principal:
        principal = authenticate(self.store, credentials)
        if principal.role != self.role:
            raise Forbidden("wrong_role", f"{principal} may not do this: it takes a {self.role}'s credential")
        if self.agency is not None and principal.agency != self.agency:
            raise Forbidden(
                "other_agency", f"{principal} is not of {self.agency}, which this server serves alone"
            )
        return principal


def require(store: CredentialStore, role: str, agency: str | None = None) -> Guard:
    return Guard(store, role, agency)


def authenticate(store: CredentialStore, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None:
        raise Unauthenticated("no_credential", "send `Authorization: Bearer <token>` (`accord auth issue`)")
    principal = store.principal(credentials.credentials)
    if principal is None:
        raise Unauthenticated("bad_credential", "this token was never issued here, or has been withdrawn")
    return principal


def install(app: FastAPI) -> None:
    """Answer `AccessDenied` as 401 (with its challenge) or 403, with a `Refused` body."""

    @app.exception_handler(AccessDenied)
    async def denied(_: Request, error: AccessDenied) -> JSONResponse:
        body = Refused(code=error.code, reason=error.message).model_dump()
        if isinstance(error, Unauthenticated):
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return JSONResponse(body, status_code=403)


def acting_for(principal: Principal, agency: str) -> None:
    """A body may only name the agency the credential is of."""
    if agency != principal.agency:
        raise Forbidden(
            "agency_mismatch",
            f"the request acts for {agency} but the credential is {principal.agency}'s; "
            "an HTTP caller acts only for the agency of its credential",
        )
