"""The publisher's settings: one frozen object, built from the environment in an entry point."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import KafkaSettings, KeystoreSettings, SecretSettings


class PublisherOptions(BaseSettings):
    """How long a command may wait for the broker."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_", frozen=True, extra="ignore")

    publish_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="env ACCORD_PUBLISH_TIMEOUT_S: delivery confirmation (and log catch-up) deadline",
    )


@dataclass(frozen=True)
class PublisherSettings:
    """Everything a `Publisher` needs from configuration."""

    kafka: KafkaSettings
    secrets: SecretSettings
    options: PublisherOptions
    keys: KeystoreSettings  # this agency's one signing key, the trust anchor, the HTTP credentials

    @classmethod
    def from_env(cls) -> PublisherSettings:
        return cls(KafkaSettings(), SecretSettings(), PublisherOptions(), KeystoreSettings())
