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
    table_memory_mb: int = Field(
        default=512,
        gt=0,
        description="RocksDB block caches and write buffers of all tables, shared out between partitions",
    )
    expiry_interval_s: float = Field(default=1.0, gt=0, description="how often due listings are expired")
    expiries_per_tick: int = Field(
        default=500, gt=0, description="at most this many expiries per tick; the rest wait for the next"
    )
    batch_size: int = Field(default=500, gt=0, description="listing messages handled and acked together")
    linger_s: float = Field(
        # 15 ms against 5: bench_ledger 1,389 / 1,550 -> 1,644 / 1,785 events/s (12,000 events,
        # alternating runs), at up to 10 ms more before each decision reaches the broker
        default=0.015,
        ge=0,
        description="how long the producer waits to fill a batch (fewer, larger requests)",
    )
    seal_threads: int = Field(
        default=2, ge=0, description="threads checking a batch's signatures ahead; 0: on the loop's thread"
    )
    batch_wait_s: float = Field(
        default=0.01, gt=0, description="how long a batch waits to fill before it is handled as it is"
    )
    clock_offset_s: float = Field(default=0.0, description="added to the wall clock (drills and tests)")
    commit_interval_s: float = Field(default=1.0, gt=0, description="how often consumed offsets commit")
    session_timeout_s: float = Field(
        default=10.0, gt=0, description="how soon the group gives a dead worker's partitions to another"
    )
    hold_limit_s: float = Field(
        default=300.0, gt=0, description="how long an event waits for its predecessor before it is refused"
    )
    stall_after_s: float = Field(
        default=5.0, gt=0, description="idle this long with unread input: seek back to the ledger's position"
    )
    static_membership: bool = Field(
        default=True, description="rejoin after a restart as the same member (group.instance.id)"
    )
    instance_id: str = Field(
        default="", description="the static member id; empty: derived from the host and the data dir"
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
