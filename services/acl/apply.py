"""Enforce a plan on a cluster: create missing ACLs, delete those no longer planned.

Run as the super user. Which existing ACLs are Accord's to delete: every ACL of a
principal in the plan, and every ACL on a resource whose name starts with the
deployment's namespace (an empty namespace therefore means Accord owns every ACL of
the cluster). A second run with the same plan changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from services.acl.plan import Grant
from services.core.connection import KafkaConnection
from services.core.errors import BrokerUnavailable
from services.core.kafka import admin_client

TIMEOUT_S = 30.0
EVERY_ACL = AclBindingFilter(
    ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY,  # type: ignore[arg-type]
)  # fmt: skip


@dataclass(frozen=True)
class Changes:
    added: list[Grant]
    removed: list[Grant]

    def text(self) -> str:
        lines = [f"+ {g.line()}" for g in self.added] + [f"- {g.line()}" for g in self.removed]
        return "\n".join([*lines, f"{len(self.added)} ACLs added, {len(self.removed)} removed"])


def binding(grant: Grant) -> AclBinding:
    return AclBinding(
        ResourceType[grant.resource], grant.name, ResourcePatternType[grant.pattern], grant.principal, "*",
        AclOperation[grant.operation], AclPermissionType.ALLOW,
    )  # fmt: skip


def grant_of(acl: AclBinding) -> Grant:
    kind, pattern, operation = (_name(x) for x in (acl.restype, acl.resource_pattern_type, acl.operation))
    return Grant(acl.principal, kind, acl.name, pattern, operation)


def _name(value: object) -> str:
    """The enum's name: the client returns enums where its stubs also allow str and int."""
    return str(getattr(value, "name", value))


def current(connection: KafkaConnection) -> list[AclBinding]:
    """Every ACL of the cluster (as the super user sees them)."""
    try:
        client = admin_client(connection)  # held until the future is done: a dropped client cancels it
        return list(client.describe_acls(EVERY_ACL, request_timeout=TIMEOUT_S).result())
    except KafkaException as e:
        raise BrokerUnavailable(f"cannot list the ACLs of {connection}: {e}") from e


def ours(acl: AclBinding, principals: set[str], namespace: str) -> bool:
    return acl.principal in principals or bool(namespace and acl.name.startswith(namespace))


def apply(connection: KafkaConnection, wanted: Iterable[Grant], namespace: str) -> Changes:
    """Make the cluster's ACLs in Accord's scope equal to `wanted`."""
    plan = set(wanted)
    principals = {g.principal for g in plan}
    existing = current(connection)
    have = {
        grant_of(acl)
        for acl in existing
        if acl.permission_type == AclPermissionType.ALLOW and acl.host == "*"
    }
    stale = [acl for acl in existing if ours(acl, principals, namespace) and _stale(acl, plan)]  # DENY stays
    added = sorted(plan - have)
    admin = admin_client(connection)
    if added:
        _wait(admin.create_acls([binding(g) for g in added], request_timeout=TIMEOUT_S), "create")
    if stale:
        _wait(admin.delete_acls([_exactly(acl) for acl in stale], request_timeout=TIMEOUT_S), "delete")
    changes = Changes(added, sorted(grant_of(acl) for acl in stale))
    if added or stale:
        _until_enforced(connection, plan, principals, namespace)
    return changes


def _until_enforced(
    connection: KafkaConnection, plan: set[Grant], principals: set[str], namespace: str
) -> None:
    """The controller commits ACLs; brokers apply them a moment later. Services started right
    after `apply` must not meet the old ones, so wait until the broker answers with the plan."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        mine = [acl for acl in current(connection) if ours(acl, principals, namespace)]
        if plan <= {grant_of(acl) for acl in mine} and not any(_stale(acl, plan) for acl in mine):
            return
        if time.monotonic() > deadline:
            raise BrokerUnavailable(f"ACLs applied but not in force after {TIMEOUT_S} s")
        time.sleep(0.2)


def _stale(acl: AclBinding, plan: set[Grant]) -> bool:
    """An ALLOW the plan does not make. A DENY (an operator locking someone out) is never removed."""
    allows = acl.permission_type == AclPermissionType.ALLOW
    return allows and (acl.host != "*" or grant_of(acl) not in plan)


def _exactly(acl: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(
        acl.restype, acl.name, acl.resource_pattern_type, acl.principal, acl.host, acl.operation,
        acl.permission_type,
    )  # fmt: skip


def _wait(futures: Mapping[Any, Future[Any]], what: str) -> None:
    for future in futures.values():
        try:
            future.result()
        except KafkaException as e:
            raise BrokerUnavailable(f"could not {what} ACLs: {e}") from e
