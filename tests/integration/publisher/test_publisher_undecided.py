"""When the ledger has not ruled within the wait: "accepted by the broker, not yet decided", through
every interface, with a way to ask again; and the answer once the ledger has ruled.

A namespace of this test's own, whose ledger starts only halfway: until then nothing can decide.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from services.cli import main
from services.core.connection import KafkaConnection
from services.core.credentials import FileCredentials
from services.core.crypto import AgencyKey
from services.publisher.client import Publisher
from services.publisher.errors import Undecided
from tests.integration.ledger import harness
from tests.integration.publisher.conftest import Server
from tests.support.factory import trust_env
from tests.unit.publisher import samples
from tests.unit.publisher.samples import NOW, PSEUDONYM_KEY


def cli(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner(env=env).invoke(main, list(args))
    return result.exit_code, json.loads(result.output)


def test_an_undecided_event_is_reported_as_such_and_answered_once_the_ledger_rules(
    kafka_admin: KafkaConnection, tmp_path: Path, serve: Server
) -> None:
    backbone = harness.Backbone(kafka_admin, f"t{uuid.uuid4().hex[:10]}.", tmp_path)
    court = backbone.connection_as("court")  # the court's publisher, as the court's principal
    signer = AgencyKey("court", backbone.keystore.private("court"))
    publisher = Publisher(court, backbone.topics, backbone.policy, signer,
                          PSEUDONYM_KEY, timeout=30, clock=lambda: NOW, decision_wait=1.0)  # fmt: skip
    credentials = tmp_path / "credentials.yaml"
    token = {"Authorization": f"Bearer {FileCredentials(credentials).issue('court', 'clerk')}"}
    env = {**court.environment(), "ACCORD_NAMESPACE": backbone.namespace,
           **trust_env(backbone.keystore, backbone.policy),
           "ACCORD_SIGNING_KEY_FILE": str(backbone.keystore.key_file("court")),
           "ACCORD_CREDENTIALS_FILE": str(credentials), "ACCORD_PSEUDONYM_KEY": "k",
           "ACCORD_DECISION_WAIT_S": "1"}  # fmt: skip
    try:
        command = samples.issue()
        with pytest.raises(Undecided) as pending:
            publisher.issue(command)
        receipt = pending.value.receipt
        assert (
            receipt.status == "undecided"
            and receipt.event_id == command.event_id
            and receipt.offset is not None
        )
        with pytest.raises(Undecided):  # a retry while undecided is not sent again
            publisher.issue(command)
        assert len(list(backbone.read(backbone.topics.listings("court")))) == 1

        url = serve(env)
        answer = httpx.post(f"{url}/listings", json=_body(), headers=token, timeout=30)
        assert answer.status_code == 202, answer.text
        ask = answer.json()["ask_again"]
        assert answer.json()["status"] == "undecided" and answer.headers["location"] == ask
        assert httpx.get(f"{url}{ask}", headers=token, timeout=30).status_code == 202
        assert httpx.get(f"{url}{ask}", timeout=30).status_code == 401  # authenticated like the rest

        code, printed = cli(env, "publish", "issue", "--file", str(_file(tmp_path)))
        assert code == 8 and printed["status"] == "undecided"
        assert printed["ask_again"].startswith("accord publish verdict --listing-id")

        backbone.start_ledger()
        admitted = publisher.verdict(receipt.listing_id, receipt.event_id, wait=90)
        assert admitted.status == "admitted" and admitted.version == 1
        assert publisher.issue(command).duplicate
        later = httpx.get(f"{url}{ask}", headers=token, timeout=30)
        assert later.status_code == 200 and later.json()["status"] == "admitted"
        asked = printed["ask_again"].split()[3:]  # after "accord publish verdict"
        code, verdict = cli(env, "publish", "verdict", *asked, "--wait", "60")
        assert code == 0 and verdict["status"] == "admitted", verdict
    finally:
        publisher.close()
        backbone.stop_all()


def _body() -> dict[str, Any]:
    body = samples.issue().model_dump(mode="json")
    return {**body, "national_id": samples.NATIONAL_ID, "full_name": samples.FULL_NAME}


def _file(folder: Path) -> Path:
    path = folder / "issue.json"
    path.write_text(json.dumps(_body()))
    return path
