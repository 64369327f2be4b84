"""Settings shared by every service, built from the environment in an entry point, never at import."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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
