"""One error root, with families a caller can act on; driver errors are translated at the edge."""

from __future__ import annotations


class AccordError(Exception):
    """Root of every error Accord raises on purpose."""


class RuleViolation(AccordError):
    """A command the law (DESIGN.md §6) does not allow. `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConflictError(RuleViolation):
    """A command against a version that is not the listing's latest (optimistic concurrency)."""


class UnknownListing(RuleViolation):
    """A command about a listing the backbone has never seen."""


class ContractError(AccordError):
    """Bytes or data that do not fit the event contract (unknown schema, undecodable body)."""


class PolicyError(AccordError):
    """A policy file (catalogue, measures, agencies) that cannot be loaded as it stands."""


class BrokerUnavailable(AccordError):
    """Kafka could not be reached or did not confirm delivery in time."""


class ConfigurationError(AccordError):
    """Settings or local tools missing or wrong; the message says what to fix."""


class AccessDenied(AccordError):
    """A caller who may not do what it asked. `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Unauthenticated(AccessDenied):
    """No credential, or one nobody issued (HTTP 401)."""


class Forbidden(AccessDenied):
    """A known caller acting beyond its credential or key: another agency, another role (HTTP 403)."""
