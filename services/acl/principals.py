"""A SCRAM credential per principal, made by the super user and kept in files only its owner reads.

`accord backbone up` gives each service and each agency its own password file (0600, in a
0700 folder under the state directory); the broker stores only the salted SCRAM hash.
Upserting again with the same password is harmless, so provisioning is idempotent and
also repairs a cluster that was reformatted under existing files.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from services.core.connection import KafkaConnection
from services.core.credentials import new_password
from services.core.errors import BrokerUnavailable
from services.core.files import SECRET_FILE, private_folder, replace_file
from services.core.kafka import admin_client

ITERATIONS = 4096  # Kafka's minimum for SCRAM-SHA-512: each login pays this once


def password_file(folder: Path, user: str) -> Path:
    return folder / f"{user}.password"


def ensure_credentials(admin: KafkaConnection, users: Iterable[str], folder: Path) -> dict[str, Path]:
    """Each user's password file (made if missing), and its SCRAM credential on the cluster."""
    private_folder(folder)
    files = {user: password_file(folder, user) for user in users}
    for path in files.values():
        if not path.is_file():
            replace_file(path, new_password(), SECRET_FILE)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            user,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS),
            path.read_text().strip().encode(),
        )
        for user, path in files.items()
    ]
    if upserts:
        client = admin_client(admin)  # held until every future is done: a dropped client cancels them
        futures = client.alter_user_scram_credentials(upserts, request_timeout=30)
        for user, future in futures.items():
            try:
                future.result()
            except KafkaException as e:
                raise BrokerUnavailable(f"could not set the SCRAM credential of {user}: {e}") from e
    return files


def connection_of(admin: KafkaConnection, user: str, folder: Path) -> KafkaConnection:
    """The same cluster as `admin`, authenticated as `user` with its provisioned password."""
    return admin.as_user(user, password_file(folder, user).read_text().strip())


def environment_of(admin: KafkaConnection, user: str, folder: Path) -> dict[str, str]:
    """What a child process running as `user` needs: the password stays in its file."""
    env = connection_of(admin, user, folder).environment()
    env.pop("ACCORD_KAFKA_PASSWORD", None)
    return {**env, "ACCORD_KAFKA_PASSWORD_FILE": str(password_file(folder, user))}
