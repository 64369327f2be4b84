"""The domain loads no wire format and no Kafka client: each module imported in a fresh interpreter.

The domain is what the rules of the design are made of; it must be readable, testable and
reusable without a broker or Avro. The list below is the one docs/architecture.md §5 names.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

DOMAIN = (
    "services.core.events",
    "services.core.commands",
    "services.core.policy",
    "services.core.listing",
    "services.core.rules",
    "services.core.screening",
    "services.core.views",
    "services.core.digest",
    "services.core.admission",
    "services.core.fold",
    "services.core.crypto",
    "services.core.ids",
    "services.core.rejections",
    "services.core.errors",
    "services.core.topics",
    "services.core.partitioner",
    "services.core.position",
    "services.core.clock",
)
FORBIDDEN = ("fastavro", "confluent_kafka", "faust", "aiokafka", "mode")

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))))
"""


def loaded_by(module: str) -> list[str]:
    """The forbidden packages (and their submodules) a fresh interpreter holds after importing `module`."""
    run = subprocess.run(
        [sys.executable, "-c", PROBE, module, ",".join(FORBIDDEN)],
        capture_output=True,
        text=True,
        check=True,
    )
    found: list[str] = json.loads(run.stdout)
    return found


@pytest.mark.parametrize("module", DOMAIN)
def test_a_domain_module_loads_no_avro_and_no_kafka(module: str) -> None:
    assert loaded_by(module) == []


def test_the_probe_sees_what_the_wire_format_loads() -> None:
    """Without this, a probe that saw nothing would pass every module above."""
    assert "fastavro" in loaded_by("services.core.sealing")
    assert "confluent_kafka" in loaded_by("services.core.kafka")
