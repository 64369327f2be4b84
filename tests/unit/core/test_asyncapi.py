"""`accord asyncapi`: an AsyncAPI 3 document naming every topic, schema and who sends or receives what.

Checked against the registry and the shipped policy (every topic, every current Avro schema, each
payload the very schema the wire carries: same CRC-64-AVRO fingerprint), against the official
AsyncAPI 3.0.0 JSON Schema (tests/support/asyncapi/), and for references that resolve: every
operation names a channel of the document and only messages that channel carries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from services.acl.cli import topic_access
from services.acl.plan import plan
from services.cli import main
from services.core.asyncapi import AVRO_FORMAT, document
from services.core.policy import load_policy
from services.core.serde import SCHEMA_ROOT, registry
from services.core.topics import Topics

OFFICIAL = Path(__file__).resolve().parents[2] / "support" / "asyncapi" / "asyncapi-3.0.0.schema.json"
NAMESPACE = "prod."


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    policy, topics = load_policy(), Topics(NAMESPACE)
    return document(topics, policy, topic_access(plan(policy, topics), NAMESPACE), "1.2.3")


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_it_is_valid_against_the_official_asyncapi_3_schema(doc: dict[str, Any]) -> None:
    schema = json.loads(OFFICIAL.read_text())
    assert schema["title"] == "AsyncAPI 3.0.0 schema."
    jsonschema.Draft7Validator(schema).validate(doc)
    assert doc["asyncapi"] == "3.0.0" and doc["info"]["version"] == "1.2.3"
    broken = {**doc, "operations": {"x": {"action": "publish", "channel": {"$ref": "#/channels/ledger"}}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))  # the check can fail


def test_it_names_every_topic_the_registry_specs_for_the_shipped_policy(doc: dict[str, Any]) -> None:
    policy = load_policy()
    specs = Topics(NAMESPACE).specs(policy.issuers, policy.enforcers)
    channels = doc["channels"].values()
    assert sorted(c["address"] for c in channels) == sorted(s.name for s in specs)
    for spec in specs:
        (channel,) = [c for c in channels if c["address"] == spec.name]
        assert sorted(channel["messages"]) == sorted(spec.carries)
        policy_of = channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"]
        assert policy_of == [spec.config["cleanup.policy"]]


def test_it_carries_every_current_avro_schema_as_the_wire_has_it(doc: dict[str, Any]) -> None:
    current = SCHEMA_ROOT / f"v{max(registry().versions)}"
    names = {p.name.removeprefix("accord.").removesuffix(".avsc") for p in current.glob("*.avsc")}
    assert set(doc["components"]["schemas"]) == names
    for name, message in doc["components"]["messages"].items():
        assert message["payload"]["schemaFormat"] == AVRO_FORMAT
        canonical = to_parsing_canonical_form(parse_schema(message["payload"]["schema"]))
        assert bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")) == registry().writer(name).fingerprint
        assert message["headers"]["properties"]["ce_type"]["const"].startswith("cn.accord.")


def test_every_operation_refers_to_a_channel_and_to_messages_of_that_channel(doc: dict[str, Any]) -> None:
    assert doc["operations"]
    for operation in doc["operations"].values():
        channel = resolve(doc, operation["channel"]["$ref"])
        assert channel in doc["channels"].values()
        for ref in (m["$ref"] for m in operation["messages"]):
            assert ref.startswith(operation["channel"]["$ref"] + "/messages/")
            assert resolve(doc, resolve(doc, ref)["$ref"]) in doc["components"]["messages"].values()


def test_who_sends_and_receives_comes_from_the_acl_plan(doc: dict[str, Any]) -> None:
    said = {o["title"] for o in doc["operations"].values()}
    expected = {
        "court sends prod.listings.court",
        "ledger receives prod.listings.court",
        "ledger sends prod.views.civil-aviation",
        "civil-aviation receives prod.views.civil-aviation",
        "civil-aviation sends prod.copies.applied.civil-aviation",
        "reconciler receives prod.copies.applied.civil-aviation",
        "reconciler sends prod.findings",
    }
    assert expected <= said
    assert "court sends prod.listings.luoshan-police" not in said  # only the author writes its topic


def test_the_command_writes_json_or_yaml_of_the_same_document(tmp_path: Path) -> None:
    runner = CliRunner()
    as_json, as_yaml = tmp_path / "accord.json", tmp_path / "accord.yaml"
    for target in (as_json, as_yaml):
        done = runner.invoke(main, ["asyncapi", "--output", str(target)], env={"ACCORD_NAMESPACE": ""})
        assert done.exit_code == 0, done.output
    written = json.loads(as_json.read_text())
    assert yaml.safe_load(as_yaml.read_text()) == written
    assert "listings.court" in {c["address"] for c in written["channels"].values()}
