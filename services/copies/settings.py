"""A copy sink's settings: one frozen object, built from the environment in its entry point."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import KafkaSettings, KeystoreSettings, SecretSettings


class CopyOptions(BaseSettings):
    """How the sink batches and reports, and when its answers count as stale."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_COPY_", frozen=True, extra="ignore")

    batch: int = Field(default=500, gt=0, description="changes read per poll")
    poll_s: float = Field(default=0.5, gt=0, description="how long a poll waits for changes")
    digest_interval_s: float = Field(default=5.0, gt=0, description="how often a CopyDigest goes out")
    verify_rows_per_minute: int = Field(
        default=60_000, gt=0, description="rows re-read per minute to re-verify the digest, bucket by bucket"
    )
    sla_s: float = Field(default=300.0, gt=0, description="lagging this long without applying: stale")
    lag_timeout_s: float = Field(default=3.0, gt=0, description="how long a check waits for the broker")
    lag_max_age_s: float = Field(default=1.0, ge=0, description="`copy serve`: how old a watermark may be")


@dataclass(frozen=True)
class CopySettings:
    kafka: KafkaSettings
    secrets: SecretSettings
    options: CopyOptions
    keys: KeystoreSettings  # where the HTTP server's credentials are

    @classmethod
    def from_env(cls) -> CopySettings:
        return cls(KafkaSettings(), SecretSettings(), CopyOptions(), KeystoreSettings())
