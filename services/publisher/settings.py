"""The publisher's settings: one frozen object, built from the environment in an entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import KafkaSettings, KeystoreSettings, SecretSettings, state_root


class PublisherOptions(BaseSettings):
    """How long a command waits for the broker and for the ledger's verdict; where its book is kept."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_", frozen=True, extra="ignore")

    publish_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="env ACCORD_PUBLISH_TIMEOUT_S: delivery confirmation (and log catch-up) deadline",
    )
    decision_wait_s: float = Field(
        default=10.0,
        ge=0,
        description="env ACCORD_DECISION_WAIT_S: how long a command waits for the ledger's verdict "
        "before it answers 'accepted by the broker, not yet decided'",
    )
    publisher_book_dir: str = Field(
        default="",
        description="env ACCORD_PUBLISHER_BOOK_DIR: the folder of the publisher's SQLite book of the "
        "ledger's decisions (read on restart, then only the log's tail); default $ACCORD_STATE_DIR/publisher",
    )

    def book_folder(self) -> Path:
        return Path(self.publisher_book_dir) if self.publisher_book_dir else state_root() / "publisher"


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
