"""Policy as data: the catalogue, the measures list and the agencies, loaded from `schemas/policy/`.

Policy is versioned in the repository, not code. A bad file is refused on load
with a `PolicyError` naming the file and the field, never half-loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.core.errors import PolicyError
from services.core.resources import data_path

POLICY_ROOT = data_path("schemas", "policy")
SEVERITY_TIERS: tuple[str, ...] = ("minor", "serious", "severe")
Severity = Literal["minor", "serious", "severe"]


class PolicyModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Category(PolicyModel):
    """A catalogue category: what may be collected about a subject, how long, how disclosed."""

    code: str
    name: str
    fields: list[str] = Field(description="the only detail fields a listing of this category may carry")
    retention_days: int = Field(gt=0, description="the listing expires by itself after this")
    disclosure: Literal["public", "restricted", "confidential"]


class Measure(PolicyModel):
    """A restriction from the measures list."""

    code: str
    name: str
    legal_basis: str
    min_severity: Severity = Field(description="no listing below this tier may cite the measure")
    max_duration_days: int = Field(gt=0)
    enforced_by: list[str] = Field(min_length=1)


class Agency(PolicyModel):
    """A department on the backbone: what it issues, what it enforces, what it may see."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    name: str
    issues: bool
    is_court: bool = False
    enforces: list[str] = Field(default_factory=list)
    fields: list[str] = Field(default_factory=list, description="view fields it is entitled to")
    public_key: str = Field(default="", description="base64 Ed25519 public key")


class Redress(PolicyModel):
    """Time limits of the procedure: notice before effect, answer to an objection."""

    grace_days: int = Field(ge=0)
    objection_due_days: int = Field(gt=0)
    min_subject_age_years: int = Field(gt=0)


class Policy(PolicyModel):
    categories: list[Category]
    measures: list[Measure]
    agencies: list[Agency]
    redress: Redress

    @model_validator(mode="after")
    def _references_resolve(self) -> Policy:
        agency_ids = {a.id for a in self.agencies}
        for m in self.measures:
            unknown = set(m.enforced_by) - agency_ids
            if unknown:
                raise ValueError(f"measure {m.code} is enforced by unknown agencies {sorted(unknown)}")
        return self

    @cached_property
    def category_by_code(self) -> dict[str, Category]:
        return {c.code: c for c in self.categories}

    @cached_property
    def measure_by_code(self) -> dict[str, Measure]:
        return {m.code: m for m in self.measures}

    @cached_property
    def agency_by_id(self) -> dict[str, Agency]:
        return {a.id: a for a in self.agencies}

    @property
    def issuers(self) -> list[str]:
        return [a.id for a in self.agencies if a.issues]

    @property
    def enforcers(self) -> list[str]:
        return sorted({agency for m in self.measures for agency in m.enforced_by})

    def with_public_keys(self, keys: Mapping[str, str]) -> Policy:
        """This policy with the agencies' public signing keys registered (from a keystore)."""
        agencies = [a.model_copy(update={"public_key": keys.get(a.id, a.public_key)}) for a in self.agencies]
        return Policy(
            categories=self.categories, measures=self.measures, agencies=agencies, redress=self.redress
        )

    def enforced_by(self, agency: str, measures: Iterable[str]) -> list[str]:
        """The measures among `measures` that `agency` enforces, in their original order."""
        return [m for m in measures if agency in self.measure_by_code.get(m, _NO_MEASURE).enforced_by]

    def entitled_agencies(self, measures: Iterable[str]) -> set[str]:
        """Every agency that enforces at least one of `measures`."""
        return {a for m in measures for a in self.measure_by_code.get(m, _NO_MEASURE).enforced_by}


_NO_MEASURE = Measure(
    code="", name="", legal_basis="", min_severity="minor", max_duration_days=1, enforced_by=["-"]
)


def _read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise PolicyError(f"policy file {path} is missing") from e
    except yaml.YAMLError as e:
        raise PolicyError(f"policy file {path} is not valid YAML: {e}") from e


def load_policy(root: Path = POLICY_ROOT) -> Policy:
    """Load and validate the four policy files under `root`; raise `PolicyError` on any fault."""
    raw = {
        "categories": _read_yaml(root / "catalogue.yaml"),
        "measures": _read_yaml(root / "measures.yaml"),
        "agencies": _read_yaml(root / "agencies.yaml"),
        "redress": _read_yaml(root / "redress.yaml"),
    }
    try:
        return Policy.model_validate(raw)
    except ValidationError as e:
        faults = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise PolicyError(f"policy under {root} is invalid: {faults}") from e
