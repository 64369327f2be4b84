"""`pip install` of the built wheel (not editable) works away from the checkout.

The source tree is copied (so the checkout stays clean), its sdist and wheel are built from the
copy with this venv's setuptools (`python -m build --no-isolation`: offline, and the wheel is built
from the sdist, so MANIFEST.in is exercised too), and the wheel is installed without its
dependencies into a fresh virtual environment in a temporary folder. That environment borrows the
dependencies from the dev venv's site-packages through a `.pth` line, which does not run the dev
venv's own `.pth` files, so the editable install of the checkout stays out of it. From a folder
outside the checkout, with no PYTHONPATH, `accord --help` and `accord demo luoshan` (on the
session's broker) must work: schemas, policy and the broker's deploy files come from the wheel, and
the installed reconciler's findings carry their CloudEvents headers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cloudevents.core.base import BaseCloudEvent
from confluent_kafka import KafkaException, TopicPartition

from services.core.connection import KafkaConnection
from services.core.events import Event, Finding
from services.core.kafka import admin_client, consumer, decode_message, read_all
from services.core.topics import RECONCILER
from tests.support.cloudevents import as_cloudevent

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "schemas", "services", "deploy")


def run(
    *command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    args = [str(c) for c in command]
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def build_wheel(folder: Path) -> Path:
    tree = folder / "source"
    tree.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "_data"))
        else:
            shutil.copy2(REPO / name, tree / name)
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", folder / "dist", tree)
    (wheel,) = (folder / "dist").glob("accord-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh virtual environment holding the wheel."""
    folder = tmp_path_factory.mktemp("install")
    wheel = build_wheel(folder)
    venv = folder / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "accord-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def demo_topics(connection: KafkaConnection) -> set[str]:
    return {t for t in admin_client(connection).list_topics(timeout=10).topics if t.startswith("luoshan-")}


def coordinator_answers(connection: KafkaConnection) -> None:
    """Wait until the session broker's group coordinator serves (its offsets topic loaded).

    The demo's ledger is then not the first consumer group of a fresh broker: on a cold, loaded
    broker Faust starts before the coordinator and the ledger stops (exit 70, for a supervisor to
    restart; the demo has none). That start-up race is the ledger's, not the wheel's."""
    probe, deadline = consumer(connection, connection.group("install-warm-up")), time.monotonic() + 120
    try:
        while True:
            try:
                probe.committed([TopicPartition("__consumer_offsets", 0)], timeout=10)
                return
            except KafkaException:  # not coordinator yet, coordinator loading: what this waits out
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        probe.close()


@pytest.fixture
def outside(tmp_path: Path, kafka_admin: KafkaConnection) -> Iterator[dict[str, str]]:
    """An environment away from the checkout: the session broker's connection, no PYTHONPATH,
    state in a temporary folder. The demo's topics are deleted afterwards."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(kafka_admin.environment(), ACCORD_STATE_DIR=str(tmp_path / "state"))
    before = demo_topics(kafka_admin)
    coordinator_answers(kafka_admin)
    yield env
    theirs = list(demo_topics(kafka_admin) - before)
    admin = admin_client(kafka_admin)  # held until the deletions are confirmed
    for future in (admin.delete_topics(theirs, operation_timeout=30) if theirs else {}).values():
        future.result()


def test_the_installed_package_reads_its_own_schemas_policy_and_deploy_files(
    installed: Path, outside: dict[str, str], tmp_path: Path
) -> None:
    where = (
        "import services, services.core.serde as s, services.core.policy as p\n"
        "import services.localkafka.broker as b\n"
        "print(services.__file__, s.SCHEMA_ROOT, p.POLICY_ROOT, b.POM, b.LOG4J_CONFIG, sep='\\n')"
    )
    paths = run(installed / "python", "-c", where, cwd=tmp_path, env=outside).stdout.split()
    venv = installed.parent.resolve()
    assert all(Path(p).is_relative_to(venv) for p in paths), paths  # nothing from the checkout
    assert all(Path(p).exists() for p in paths), paths
    shipped, ours = Path(paths[1]), REPO / "schemas" / "avro"
    assert sorted(p.name for p in shipped.glob("v*/*")) == sorted(p.name for p in ours.glob("v*/*"))
    assert Path(paths[3]).read_bytes() == (REPO / "deploy" / "kafka-pom.xml").read_bytes()
    printed = run(installed / "accord", "asyncapi", "--format", "json", cwd=tmp_path, env=outside).stdout
    made = json.loads(printed)
    assert made["asyncapi"] == "3.0.0" and made["components"]["schemas"]  # the wheel's own schemas


def test_accord_help_and_the_luoshan_demo_run_from_the_wheel(
    installed: Path, outside: dict[str, str], tmp_path: Path, kafka_admin: KafkaConnection
) -> None:
    before = demo_topics(kafka_admin)
    helped = run(installed / "accord", "--help", cwd=tmp_path, env=outside)
    assert "demo" in helped.stdout and "publish" in helped.stdout
    accord = installed / "accord"
    demo = run(accord, "demo", "luoshan", "--workdir", tmp_path / "w", cwd=tmp_path, env=outside)
    assert "the passenger may fly" in demo.stdout, demo.stdout
    assert "detected at" in demo.stdout and "repaired at" in demo.stdout, demo.stdout
    # The installed reconciler's findings and repairs are CloudEvents too, named by the demo's namespace.
    (findings,) = [t for t in demo_topics(kafka_admin) - before if t.endswith(".findings")]
    namespace = findings.removesuffix("findings")
    found = read_back(kafka_admin, findings)
    assert found and all(isinstance(event, Finding) for _, event in found)
    views = read_back(kafka_admin, f"{namespace}views.civil-aviation")
    repairs = [(cloud, event) for cloud, event in views if event.envelope.agency == RECONCILER]
    assert repairs, "the demo repairs civil aviation's copy by re-delivering into its view"
    for cloud, event in [*found, *repairs]:
        assert cloud.get_source() == f"urn:accord:{namespace.strip('.')}:reconciler"
        assert cloud.get_id() == event.envelope.event_id
    kinds = {cloud.get_type() for cloud, _ in [*found, *repairs]}
    assert kinds == {"cn.accord.finding.v2", "cn.accord.view.changed.v2"}


def read_back(connection: KafkaConnection, topic: str) -> list[tuple[BaseCloudEvent, Event]]:
    """Every message of `topic`, as the CloudEvents SDK reads it and as Accord decodes it."""
    return [(as_cloudevent(m), decode_message(m).event) for m in read_all(connection, [topic])]
