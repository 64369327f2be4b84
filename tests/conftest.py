"""Session-wide services for the tests: a real Kafka broker and a real PostgreSQL.

Never mocks (docs/architecture.md §8). Each is taken from the environment when given
(`KAFKA_BOOTSTRAP_SERVERS`, `ACCORD_TEST_POSTGRES_URL`), else started here and
stopped when the session ends, pass or fail. Kafka comes from a Docker engine
when one answers, else from Kafka's jars (services.localkafka.broker), so the
suite runs the same on a laptop with Docker and on a CI machine without.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from services.core.connection import SECURITY_VARIABLES, KafkaConnection
from services.core.settings import KafkaSettings
from services.localkafka.broker import LocalKafka, free_ports
from tests.support.reaper import reaped

KAFKA_IMAGE = "apache/kafka:4.1.1"
pytest_plugins = ["tests.support.copy_stores"]  # `url` and `store`: one of each copy database

# Hypothesis judges a test by what it finds, not by this machine's speed: its deadline and its
# "input generation is slow" check failed good tests when other work shared the two cores.
settings.register_profile("accord", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("accord")


# --- Local state -------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _session_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every CLI a test runs without a folder of its own keeps its keys and state in the session's
    temporary folder, never in the developer's `~/.local/state/accord` or `$ACCORD_STATE_DIR`
    (a test once wrote agencies' keys there). Tests that need their own set it themselves."""
    folder = tmp_path_factory.mktemp("accord-state")
    saved = os.environ.get("ACCORD_STATE_DIR")
    os.environ["ACCORD_STATE_DIR"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("ACCORD_STATE_DIR", None)
    else:
        os.environ["ACCORD_STATE_DIR"] = saved


# --- Kafka -------------------------------------------------------------------------


# The session broker ends up holding every test's namespaces (thousands of partitions) and meets
# the refusal tests' reconnect storms: at the launcher's 192 MiB it ran out of heap just before the
# scenarios (OutOfMemoryError in its log; every later test then failed on metadata).
SESSION_HEAP_MB = 512


@pytest.fixture(scope="session")
def kafka_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaConnection]:
    """The session broker, as its super user (tests that are plumbing connect so), with auto
    topic creation off. The local broker is secured (SASL_SSL, SCRAM, ACLs enforced) like
    `accord kafka up`; a given `KAFKA_BOOTSTRAP_SERVERS` brings its security from the
    documented `ACCORD_KAFKA_*` variables. For the session, the environment names this
    connection, so every `KafkaSettings()` and every child process authenticates too."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield KafkaSettings().connection
    elif _docker_answers():
        for bootstrap in _kafka_container():
            with _session_environment(KafkaConnection(bootstrap)) as connection:
                yield connection
    else:
        with local_broker(tmp_path_factory.mktemp("kafka")) as broker:
            admin = broker.connection()
            assert admin is not None
            with _session_environment(admin) as connection:
                yield connection


@contextlib.contextmanager
def local_broker(folder: Path) -> Iterator[LocalKafka]:
    """The session's own broker in `folder`, stopped when the session ends, pass or fail, and by a
    watcher (`tests/support/reaper.py`) should the session be killed before it could stop it."""
    broker = LocalKafka(folder, heap_mb=SESSION_HEAP_MB)
    with reaped(broker.pid_file, f"{broker.state_dir}/node-", signal.SIGTERM):
        try:
            broker.start()
            yield broker
        finally:
            broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_admin: KafkaConnection) -> str:
    """`host:port,...` of the session broker (for environments and messages)."""
    return kafka_admin.bootstrap


@contextlib.contextmanager
def _session_environment(connection: KafkaConnection) -> Iterator[KafkaConnection]:
    saved = {name: os.environ.get(name) for name in ("KAFKA_BOOTSTRAP_SERVERS", *SECURITY_VARIABLES)}
    for name in saved:
        os.environ.pop(name, None)
    os.environ.update(connection.environment())
    try:
        yield connection
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def _docker_answers() -> bool:
    """A quick ping; any failure (no SDK, no socket, no daemon) means no Docker.

    Without DOCKER_HOST and without the default socket there is nothing to ask.
    A failed ping leaks the SDK's socket, whose ResourceWarning would otherwise
    fail whichever test happens to collect it (warnings are errors here).
    """
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()


def _kafka_container() -> Iterator[str]:
    """The official image in KRaft combined mode, PLAINTEXT: unlike the local launcher it is not
    secured (not exercised here: no Docker engine in CI), so the security tests skip on it.

    testcontainers' KafkaContainer drives Confluent's image (its start script
    and `with_kraft()` version check assume cp-kafka), so the official image is
    configured here through its KAFKA_* variables. The client port is bound to
    a host port chosen now, because the broker must advertise it.
    """
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    (port,) = free_ports(1)
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_envs(**_kafka_container_env(port))
        .waiting_for(LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(120))
    )
    container.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        container.stop()


def _kafka_container_env(port: int) -> dict[str, str]:
    """The same settings as services.localkafka.broker renders for one node."""
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_NUM_PARTITIONS": "1",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
    }


@pytest.fixture
def namespace() -> str:
    """A topic-name prefix of this test's own, so that tests sharing the session
    broker never read each other's topics (the topic registry prepends it)."""
    return f"t{uuid.uuid4().hex[:10]}."


# --- PostgreSQL --------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL database named `accord` for the whole session."""
    configured = os.environ.get("ACCORD_TEST_POSTGRES_URL")
    if configured:
        yield configured
        return
    cluster = _PostgresCluster(_postgres_bin_dir())
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[str]:
    """URL of an empty database of this test's own, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(postgres_url, name)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def _postgres_bin_dir() -> Path:
    """Debian's versioned directory (newest first), else wherever PATH has initdb."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version, reverse=True)
    found = candidates[0] if candidates else shutil.which("initdb")
    if found is None:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: run deploy/bootstrap, "
            "or set ACCORD_TEST_POSTGRES_URL"
        )
    return Path(found).parent


def _version(initdb: str) -> int:
    """Sort key: the major version in /usr/lib/postgresql/<major>/bin/initdb."""
    major = Path(initdb).parent.parent.name
    return int(major) if major.isdigit() else 0


class _PostgresCluster:
    """A throwaway cluster in a temporary directory: trust auth, TCP on 127.0.0.1,
    its socket inside its own directory, durability off (tests need none of it).

    PostgreSQL refuses to run as root, so as root every command runs as the
    `postgres` OS user, which must own the directory.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="accord-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = free_ports(1)[0]
        self.started = False
        self._watcher = contextlib.ExitStack()

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*prefix, str(self.bin_dir / command[0]), *command[1:]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed:\n{result.stdout}{result.stderr}{self._log()}")

    def _log(self) -> str:
        log = self.root / "postgres.log"
        return log.read_text(errors="replace")[-4000:] if log.is_file() else ""

    @property
    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (the first line of its pid file), None if there is none."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None

    def start(self) -> str:
        """Initialise and start the cluster; a watcher stops it (fast shutdown) and removes its folder
        should this process die before `stop` (pg_ctl daemonises the postmaster: it outlives us)."""
        pid_file = self.data / "postmaster.pid"
        self._watcher.enter_context(reaped(pid_file, str(self.data), signal.SIGINT, True, (self.root,)))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                  "-o", options, "-w", "-t", "60", "start")  # fmt: skip
        self.started = True
        url = f"postgresql://postgres@127.0.0.1:{self.port}"
        with psycopg.connect(f"{url}/postgres", autocommit=True) as admin:
            admin.execute("CREATE DATABASE accord")
        return f"{url}/accord"

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self._watcher.close()
