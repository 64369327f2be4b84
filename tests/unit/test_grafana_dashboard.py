"""The Grafana dashboard (deploy/grafana/accord.json) charts only metrics Accord exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from services.core import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "accord.json"
SUFFIXES = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"]}


def exported() -> set[str]:
    """Every series name the metrics of `services.core.metrics` expose."""
    names = set()
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            for family in metric.describe():
                names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def test_every_expression_of_the_dashboard_names_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= len(dashboard["panels"]) >= 8
    known = exported()
    for expr in exprs:
        named = set(re.findall(r"\baccord_[a-z_]+\b", expr))
        assert named, f"{expr!r} names no Accord metric"
        assert named <= known, f"{expr!r} names {sorted(named - known)}, which Accord does not export"


def test_the_dashboard_charts_lag_latency_time_to_consistency_findings_and_refusals() -> None:
    text = DASHBOARD.read_text()
    for metric in ("accord_consumer_lag", "accord_copy_apply_latency_seconds_bucket",
                   "accord_time_to_consistency_seconds_bucket", "accord_findings_open",
                   "accord_events_refused_total", "accord_healthy"):  # fmt: skip
        assert metric in text
