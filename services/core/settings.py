"""Settings shared by every service, built from the environment in an entry point, never at import."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.connection import DEFAULT_MECHANISM, KafkaConnection
from services.core.crypto import Keystore
from services.core.policy import Policy, load_policy
from services.core.topics import Topics


class KafkaSettings(BaseSettings):
    """Where the broker is, how a client authenticates to it, and how topics are laid out.

    Security (README "Security"): `ACCORD_KAFKA_SECURITY_PROTOCOL` (PLAINTEXT, SSL,
    SASL_PLAINTEXT, SASL_SSL), `ACCORD_KAFKA_SASL_MECHANISM` (SCRAM-SHA-512 by default),
    `ACCORD_KAFKA_USERNAME`, `ACCORD_KAFKA_PASSWORD` or `ACCORD_KAFKA_PASSWORD_FILE`,
    `ACCORD_KAFKA_CA_FILE`, and for mutual TLS `ACCORD_KAFKA_CERT_FILE`/`ACCORD_KAFKA_KEY_FILE`.
    """

    model_config = SettingsConfigDict(
        env_prefix="ACCORD_", frozen=True, extra="ignore", populate_by_name=True
    )

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ACCORD_BOOTSTRAP_SERVERS"),
    )
    namespace: str = ""
    partitions: int = 3
    replication_factor: int = 1
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", validation_alias="ACCORD_KAFKA_SECURITY_PROTOCOL"
    )
    sasl_mechanism: str = Field(default=DEFAULT_MECHANISM, validation_alias="ACCORD_KAFKA_SASL_MECHANISM")
    username: str | None = Field(default=None, validation_alias="ACCORD_KAFKA_USERNAME")
    password: SecretStr | None = Field(default=None, validation_alias="ACCORD_KAFKA_PASSWORD")
    password_file: Path | None = Field(default=None, validation_alias="ACCORD_KAFKA_PASSWORD_FILE")
    ca_file: Path | None = Field(default=None, validation_alias="ACCORD_KAFKA_CA_FILE")
    cert_file: Path | None = Field(default=None, validation_alias="ACCORD_KAFKA_CERT_FILE")
    key_file: Path | None = Field(default=None, validation_alias="ACCORD_KAFKA_KEY_FILE")

    @property
    def topics(self) -> Topics:
        return Topics(self.namespace)

    @property
    def connection(self) -> KafkaConnection:
        """What every client of this deployment is built from (services/core/connection.py)."""
        return KafkaConnection(
            bootstrap=self.bootstrap_servers,
            protocol=self.security_protocol,
            mechanism=self.sasl_mechanism,
            username=self.username,
            password=self._password(),
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
        )

    def _password(self) -> SecretStr | None:
        if self.password is not None or self.password_file is None:
            return self.password
        return SecretStr(self.password_file.read_text().strip())

    @classmethod
    def of(cls, connection: KafkaConnection, **layout: Any) -> KafkaSettings:
        """Settings for an explicit connection (tests, the backbone), ignoring the environment's."""
        return cls(
            bootstrap_servers=connection.bootstrap,
            security_protocol=connection.protocol,  # type: ignore[arg-type]
            sasl_mechanism=connection.mechanism,
            username=connection.username,
            password=connection.password,
            password_file=None,
            ca_file=connection.ca_file,
            cert_file=connection.cert_file,
            key_file=connection.key_file,
            **layout,
        )


class SecretSettings(BaseSettings):
    """Keys that must never live in the repository."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_", frozen=True, extra="ignore")

    pseudonym_key: SecretStr = Field(
        default=SecretStr(""),
        description="key of the keyed hash that turns a national id into a subject_ref",
    )


def state_root() -> Path:
    """Where local state lives (keys, local broker, backbone): `ACCORD_STATE_DIR` or ~/.local/state/accord."""
    return Path(os.environ.get("ACCORD_STATE_DIR") or Path.home() / ".local" / "state" / "accord")


class KeystoreSettings(BaseSettings):
    """The agencies' keystore: public keys for verification, private keys for whoever signs."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_", frozen=True, extra="ignore")

    keystore: Path = Field(default_factory=lambda: state_root() / "keys", description="env ACCORD_KEYSTORE")

    def policy_with_keys(self) -> Policy:
        """The repository's policy with every agency's registered public key."""
        return load_policy().with_public_keys(Keystore(self.keystore).public_keys())
