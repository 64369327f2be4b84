"""The one way a ledger or scenario test gets its backbone: topics of a namespace of its own
(principals and ACLs too, on a secured broker), every process it started stopped afterwards."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.core.connection import KafkaConnection
from services.core.events import Event
from tests.integration.ledger.harness import Backbone, wait_for


def fresh_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@contextmanager
def running_backbone(
    connection: KafkaConnection, folder: Path, namespace: str = "", ledger: dict[str, str] | None = None
) -> Iterator[Backbone]:
    """A backbone in `namespace` (a fresh one by default); its ledger worker started with the
    settings in `ledger` (`store` and `ACCORD_LEDGER_*` variables) unless `ledger` is None."""
    backbone = Backbone(connection, namespace or fresh_namespace(), folder)
    try:
        if ledger is not None:
            backbone.start_ledger(**ledger)
        yield backbone
    finally:
        backbone.stop_all()


def health_report(backbone: Backbone) -> dict[str, Any]:
    """The ledger's health file (`accord ledger status` reads it); empty while it is not written."""
    try:
        report: dict[str, Any] = json.loads((backbone.folder / "ledger" / "health.json").read_text())
        return report
    except (OSError, ValueError):
        return {}


def held_behind_a_gap(backbone: Backbone, listing_id: str, timeout: float) -> tuple[Event, dict[str, object]]:
    """Publish versions 1 and 3 of a listing; once the ledger applied 1 and reports 3 held, return the
    missing version 2 (unpublished) and the report that showed the hold."""
    book = backbone.book()
    issued, lost, revoked = (
        book.issue(listing_id),
        book.correct(listing_id, legal_basis="lost"),
        book.revoke(listing_id),
    )
    backbone.publish([issued, revoked])

    def holding() -> dict[str, object] | None:
        backbone.assert_alive()
        report = health_report(backbone)
        held = report.get("held")
        return report if isinstance(held, dict) and listing_id in held else None

    return lost, wait_for(f"{listing_id} v3 reported held", holding, timeout, every=0.5)
