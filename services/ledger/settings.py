"""The ledger's settings: one frozen object, built from the environment in its entry point."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import KafkaSettings, KeystoreSettings


class LedgerOptions(BaseSettings):
    """How the worker keeps its tables and how often it looks for expiries."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_LEDGER_", frozen=True, extra="ignore")

    store: str = Field(
        default="rocksdb://", description="Faust table store: rocksdb:// (rocksdict) or memory://"
    )
    data_dir: Path = Field(default=Path("ledger-data"), description="where RocksDB keeps the tables")
    expiry_interval_s: float = Field(default=1.0, gt=0, description="how often due listings are expired")
    clock_offset_s: float = Field(default=0.0, description="added to the wall clock (drills and tests)")
    commit_interval_s: float = Field(default=1.0, gt=0, description="how often consumed offsets commit")
    session_timeout_s: float = Field(
        default=30.0, gt=0, description="how soon the group gives a dead worker's partitions to another"
    )
    log_level: str = "warn"

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)


@dataclass(frozen=True)
class LedgerSettings:
    kafka: KafkaSettings
    options: LedgerOptions
    keys: KeystoreSettings  # the trust anchor and the backbone's own key, no agency's private key

    @classmethod
    def from_env(cls, **overrides: object) -> LedgerSettings:
        options = LedgerOptions(**overrides)  # type: ignore[arg-type]
        return cls(kafka=KafkaSettings(), options=options, keys=KeystoreSettings())
