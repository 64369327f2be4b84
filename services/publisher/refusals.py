"""One translation of errors into answers, shared by the CLI (exit status) and the HTTP API (status).

| error             | code               | HTTP | exit |
|-------------------|--------------------|------|------|
| invalid input     | invalid_command    | 422  | 3    |
| RuleViolation     | its reason code    | 422  | 3    |
| UnknownListing    | unknown_listing    | 404  | 3    |
| ConflictError     | stale_version      | 409  | 4    |
| BrokerUnavailable | broker_unavailable | 503  | 5    |
| ConfigurationError| configuration      | 500  | 6    |
| Unauthenticated   | its reason code    | 401  | 7    |
| Forbidden         | its reason code    | 403  | 7    |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from services.core.errors import (
    AccessDenied,
    AccordError,
    BrokerUnavailable,
    ConfigurationError,
    ConflictError,
    RuleViolation,
    Unauthenticated,
    UnknownListing,
)


@dataclass(frozen=True)
class Refusal:
    code: str
    reason: str
    http_status: int
    exit_code: int

    def body(self) -> dict[str, str]:
        return {"code": self.code, "reason": self.reason}


def refusal_of(error: AccordError) -> Refusal:
    if isinstance(error, AccessDenied):
        return Refusal(error.code, error.message, 401 if isinstance(error, Unauthenticated) else 403, 7)
    if isinstance(error, ConflictError):
        return Refusal(error.code, error.message, 409, 4)
    if isinstance(error, UnknownListing):
        return Refusal(error.code, error.message, 404, 3)
    if isinstance(error, RuleViolation):
        return Refusal(error.code, error.message, 422, 3)
    if isinstance(error, BrokerUnavailable):
        return Refusal("broker_unavailable", str(error), 503, 5)
    if isinstance(error, ConfigurationError):
        return Refusal("configuration", str(error), 500, 6)
    return Refusal("error", str(error), 500, 1)


def invalid(errors: list[Any]) -> Refusal:
    """A readable sentence for pydantic's errors; the offending input is never echoed back."""
    faults = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
    return Refusal("invalid_command", f"the command is not well-formed: {faults}", 422, 3)


def invalid_model(error: ValidationError) -> Refusal:
    return invalid(list(error.errors()))
