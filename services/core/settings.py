"""Settings shared by every service, built from the environment in an entry point, never at import."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.crypto import Keystore
from services.core.policy import Policy, load_policy
from services.core.topics import Topics


class KafkaSettings(BaseSettings):
    """Where the broker is and how topics are laid out."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_", frozen=True, extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ACCORD_BOOTSTRAP_SERVERS"),
    )
    namespace: str = ""
    partitions: int = 3
    replication_factor: int = 1

    @property
    def topics(self) -> Topics:
        return Topics(self.namespace)


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
