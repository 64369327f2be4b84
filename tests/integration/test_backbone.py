"""`accord backbone up | status | down`, the README's first command, run for real.

The backbone is started against the session broker in its own namespace and state
directory; a listing published through the CLI (as the court's own principal) must reach
an enforcing agency's copy (ledger and sink as the processes `up` started, each as its own
Kafka principal under the policy's ACLs), a revocation must take it away, and `down` must
stop every process `up` recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.connection import SECURITY_VARIABLES, KafkaConnection
from services.core.policy import load_policy
from services.localkafka import processes

NATIONAL_ID = "420102199005171234"


def accord(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        env=env, input=stdin, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def recorded_pids(state: Path) -> dict[str, int]:
    """Each service's pid, as the supervisor's state file records it."""
    services = json.loads((state / "backbone" / "supervisor.json").read_text())["services"]
    return {name: service["pid"] for name, service in services.items()}


@pytest.fixture
def backbone_env(kafka_admin: KafkaConnection, namespace: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**os.environ, **kafka_admin.environment(), "ACCORD_NAMESPACE": namespace,
           "ACCORD_STATE_DIR": str(tmp_path / "state")}  # fmt: skip
    for name in ("ACCORD_PSEUDONYM_KEY", "ACCORD_KEYSTORE", "ACCORD_SIGNING_KEY_FILE", "ACCORD_TRUST_ANCHOR",
                 "ACCORD_BACKBONE_KEY_FILE", "ACCORD_CREDENTIALS_FILE"):  # fmt: skip
        env.pop(name, None)
    started = accord(env, "backbone", "up")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == kafka_admin.bootstrap
    try:
        yield env
    finally:
        if (tmp_path / "state" / "backbone" / "supervisor.json").exists():
            accord(env, "backbone", "down")


def as_principal(env: dict[str, str], state: Path, user: str) -> dict[str, str]:
    """`env` after `. credentials/<user>.env`: the agency's own Kafka connection, none of the admin's."""
    lines = (state / "backbone" / "credentials" / f"{user}.env").read_text().splitlines()
    own = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    return {**{k: v for k, v in env.items() if k not in SECURITY_VARIABLES}, **own}


def running_as(state: Path) -> dict[str, str]:
    """The Kafka user each recorded service process was started with (from its environment)."""
    users = {}
    for name, pid in recorded_pids(state).items():
        environ = dict(
            item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
        )
        assert "ACCORD_KAFKA_PASSWORD" not in environ, f"{name}: the password belongs in its 0600 file"
        assert Path(environ["ACCORD_KAFKA_PASSWORD_FILE"]).stat().st_mode & 0o777 == 0o600
        users[name] = environ["ACCORD_KAFKA_USERNAME"]
    return users


def expected_principals(namespace: str) -> dict[str, str]:
    """Each service as its own principal; each copy as its agency."""
    copies = {f"copy-{a}": f"{namespace}{a}" for a in load_policy().enforcers}
    return {"ledger": f"{namespace}ledger", "reconciler": f"{namespace}reconciler", **copies}


def issue_file(folder: Path) -> Path:
    """The README's listing, without the subject's identifiers: those come on standard input."""
    now = datetime.now(UTC)
    command = {
        "birth_date": "1990-05-17",
        "category": "judgment_default", "measures": ["flight_ban"],
        "legal_basis": "SPC Provisions on Restricting High Consumption (2015), art. 3(1)",
        "severity": "serious", "case_ref": "(2026) Hu 0101 Zhi 12",
        "notice_served_at": (now - timedelta(days=10)).isoformat(), "effective_from": now.isoformat(),
    }  # fmt: skip
    path = folder / "issue.yaml"
    path.write_text(yaml.safe_dump(command))
    return path


def check_until(env: dict[str, str], store: str, restricted: bool) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        done = accord(env, "copy", "check", "--agency", "civil-aviation", "--store", store,
                      "--json", stdin=f"{NATIONAL_ID}\n")  # fmt: skip
        assert done.returncode in (0, 2), done.stderr
        answer: dict[str, Any] = json.loads(done.stdout)
        if answer["restricted"] == restricted:
            return answer
        assert time.monotonic() < deadline, f"civil aviation's copy never became restricted={restricted}"
        time.sleep(1)


def status_of(env: dict[str, str]) -> dict[str, Any]:
    done = accord(env, "backbone", "status", "--json")
    assert done.returncode in (0, 3), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def restarted_after_kill(env: dict[str, str], names: list[str]) -> dict[str, Any]:
    """Until the supervisor has restarted each of `names` once, after its `kill -9`."""
    deadline = time.monotonic() + 60
    while True:
        services: dict[str, Any] = status_of(env)["services"]
        if all(services[n]["running"] and services[n]["restarts"] == 1 for n in names):
            return services
        assert time.monotonic() < deadline, f"not restarted: {json.dumps(services, indent=1)}"
        time.sleep(0.5)


def healthy(env: dict[str, str]) -> dict[str, Any]:
    """Until every service's own /health, as `status` asks it on the port `up` gave it, says healthy."""
    deadline = time.monotonic() + 60
    while True:
        services: dict[str, Any] = status_of(env)["services"]
        if all(s["health"] and s["health"]["healthy"] for s in services.values()):
            return services
        assert time.monotonic() < deadline, f"not healthy: {json.dumps(services, indent=1)}"
        time.sleep(1)


def test_backbone_up_carries_a_listing_to_a_copy_and_down_stops_everything(
    backbone_env: dict[str, str], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    pids = recorded_pids(state)
    status = accord(backbone_env, "backbone", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count(" running ") == len(pids) >= 3 and "EXITED" not in status.stdout
    report = status_of(backbone_env)
    assert report["supervisor"]["running"] and report["cluster"]["under_replicated"] == []
    assert {n: s["pid"] for n, s in report["services"].items()} == pids
    for pid in pids.values():  # the services verify with public keys; none is given an agency's key
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        private = (b"ACCORD_KEYSTORE=", b"ACCORD_SIGNING_KEY_FILE=")
        assert not [v for v in environment if v.startswith(private)]
    assert (state / "trust" / "public_keys.yaml").stat().st_mode & 0o022 == 0
    env = {**backbone_env, "ACCORD_PSEUDONYM_KEY": (state / "backbone" / "pseudonym.key").read_text().strip(),
           "ACCORD_SIGNING_KEY_FILE": str(state / "keys" / "court.key")}  # fmt: skip
    namespace = backbone_env["ACCORD_NAMESPACE"]
    clerk = as_principal(env, state, namespace + "court")  # the court's publisher, as the court
    assert clerk["ACCORD_KAFKA_USERNAME"] == namespace + "court" and "ACCORD_KAFKA_PASSWORD" not in clerk
    issued = accord(clerk, "publish", "issue", "--file", str(issue_file(tmp_path)),
                    stdin=f"{NATIONAL_ID}\nYu Zhenhua\n")  # fmt: skip
    assert issued.returncode == 0, issued.stdout + issued.stderr
    listing_id = json.loads(issued.stdout)["listing_id"]
    store = f"sqlite:///{state / 'backbone' / 'copies' / 'civil-aviation.db'}"

    officer = as_principal(env, state, namespace + "civil-aviation")
    listed = check_until(officer, store, restricted=True)
    assert [hit["listing_id"] for hit in listed["listings"]] == [listing_id]

    killed = ["ledger", "copy-civil-aviation"]
    for name in killed:  # a crash as bad as it gets: no shutdown, no commit
        os.kill(pids[name], signal.SIGKILL)
    services = restarted_after_kill(backbone_env, killed)
    for name in killed:
        assert services[name]["last_exit"] == -signal.SIGKILL and services[name]["pid"] != pids[name]
        assert services[name]["state"] == "running" and services[name]["up_since"]
    assert all(services[n]["restarts"] == 0 for n in services if n not in killed)
    log = (state / "backbone" / "logs" / "supervisor.log").read_text()
    assert all(f"{name} exited with -9" in log for name in killed), log

    again = accord(backbone_env, "backbone", "up")  # idempotent: one supervisor, nothing restarted
    assert again.returncode == 0 and "already supervised" in again.stderr, again.stderr
    assert status_of(backbone_env)["supervisor"]["pid"] == report["supervisor"]["pid"]

    revoked = accord(clerk, "publish", "revoke", "--listing-id", listing_id,
                     "--expected-version", "1", "--reason", "mislisting", "--note", "test")  # fmt: skip
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    assert check_until(officer, store, restricted=False)["listings"] == []  # the restarted copy caught up
    answers = healthy(backbone_env)  # each answers on its own port: the answer names who answered
    assert {name: s["health"]["service"] for name, s in answers.items()} == {name: name for name in answers}
    assert "healthy" in accord(backbone_env, "backbone", "status").stdout

    assert running_as(state) == expected_principals(backbone_env["ACCORD_NAMESPACE"])
    running = recorded_pids(state)

    stopped = accord(backbone_env, "backbone", "down")
    assert stopped.returncode == 0, stopped.stderr
    supervisor = report["supervisor"]["pid"]
    assert not any(processes.exists(pid) for pid in [supervisor, *pids.values(), *running.values()])
    after = status_of(backbone_env)
    assert not after["supervisor"]["running"]
    assert {s["state"] for s in after["services"].values()} == {"stopped"}
