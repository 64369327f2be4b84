"""The reconciler's settings, built once in its entry point from the environment (never at import)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import state_root
from services.reconciler.acks import Sla
from services.reconciler.engine import Timing


class ReconcilerSettings(BaseSettings):
    """SLAs and cadences; every duration in seconds."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_RECONCILE_", frozen=True, extra="ignore")

    listing_sla_s: float = Field(default=60.0, gt=0, description="time a copy has to apply a listing change")
    revocation_sla_s: float = Field(default=30.0, gt=0, description="time a copy has to apply a revocation")
    repair_sla_s: float = Field(default=60.0, gt=0, description="time a copy has to apply a repair")
    check_interval_s: float = Field(default=1.0, gt=0, description="how often deadlines are checked")
    antientropy_interval_s: float = Field(default=10.0, gt=0, description="digest comparison per copy")
    deep_interval_s: float = Field(default=300.0, gt=0, description="digest recomputed from the copy's rows")
    verify_cycle_s: float = Field(
        default=10.0,
        gt=0,
        description="every bucket of a copy re-read from its rows once a cycle",
    )
    lease_session_s: float = Field(
        default=6.0, gt=0, description="a reconciler silent this long loses the lease to a standby"
    )
    report_interval_s: float = Field(default=60.0, gt=0, description="time-to-consistency report on stderr")
    stall_after_s: float = Field(
        default=30.0, gt=0, description="input waiting and nothing read this long: unhealthy (/health 503)"
    )
    copies: dict[str, str] = Field(default_factory=dict, description="agency -> copy store URL (JSON)")
    snapshot_dir: str = Field(
        default="",
        description="folder of the expected views' SQLite snapshot (a restart reads only the ledger's tail); "
        "default $ACCORD_STATE_DIR/reconciler",
    )

    def snapshot_folder(self) -> Path:
        return Path(self.snapshot_dir) if self.snapshot_dir else state_root() / "reconciler"

    def timing(self) -> Timing:
        sla = Sla(timedelta(seconds=self.listing_sla_s), timedelta(seconds=self.revocation_sla_s))
        return Timing(sla, timedelta(seconds=self.repair_sla_s))
