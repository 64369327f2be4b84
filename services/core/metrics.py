"""Every Prometheus metric Accord exports, in one place, so names and labels cannot drift apart.

The metrics live in `prometheus_client`'s default registry (one per process: each service is
its own process); `/metrics` of each service (`services.core.ops`) exposes them. The README's
"Health and metrics" lists them and `deploy/grafana/accord.json` charts them; a unit test
checks that every expression of the dashboard names a metric defined here.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.core.health import Health, Lag

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
TTC_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

EVENTS_HANDLED = Counter(
    "accord_events_handled", "events (ledger) or commands (publisher) handled, by outcome",
    ["service", "outcome"],
)  # fmt: skip
EVENTS_REFUSED = Counter(
    "accord_events_refused", "events or commands refused, by reason code", ["service", "reason"]
)
CONSUMER_LAG = Gauge(
    "accord_consumer_lag", "messages in a partition the service has not handled yet",
    ["service", "topic", "partition"],
)  # fmt: skip
HEALTHY = Gauge("accord_healthy", "1 when the service makes progress and is within its SLA", ["service"])
APPLY_LATENCY = Histogram(
    "accord_copy_apply_latency_seconds", "from a view change's write to the broker to its apply in the copy",
    ["agency"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
COPY_APPLIED = Counter("accord_copy_changes_applied", "view changes applied to the copy", ["agency"])
TIME_TO_CONSISTENCY = Histogram(
    "accord_time_to_consistency_seconds",
    "until a copy held what its view said: a change emitted -> acknowledged (family change), a repair"
    " of a missed change or of a copy changed under its sink (missed, changed) -> acknowledged",
    ["agency", "family"], buckets=TTC_BUCKETS,
)  # fmt: skip
FINDINGS_OPEN = Gauge("accord_findings_open", "findings not yet resolved, by kind", ["kind"])
FINDINGS = Counter("accord_findings", "findings published, by kind", ["kind"])
REPAIRS = Counter("accord_repairs", "repairs re-delivered into a view, by agency", ["agency"])
EXPIRIES = Counter("accord_expiries", "listings whose expiry the ledger published")
COMPARISONS = Counter("accord_comparisons", "anti-entropy comparisons of a copy with its view", ["agency"])


_LAG_SERIES: dict[str, set[tuple[str, str]]] = {}  # service -> the (topic, partition) series it exports


def record(health: Health, lag: Lag | None) -> None:
    """Export a verdict and the lag it was judged on, so a scrape shows what `/health` would say.

    A partition no longer in the lag (lost in a rebalance, unassigned) loses its series: a value
    left behind would show a lag nobody is working off. Unmeasured lag (`None`) changes nothing."""
    HEALTHY.labels(health.service).set(1 if health.healthy else 0)
    if lag is None:
        return
    series = {(topic, str(partition)): waiting for (topic, partition), waiting in lag.items()}
    for gone in _LAG_SERIES.get(health.service, set()) - series.keys():
        CONSUMER_LAG.remove(health.service, *gone)
    _LAG_SERIES[health.service] = set(series)
    for (topic, partition), waiting in series.items():
        CONSUMER_LAG.labels(health.service, topic, partition).set(waiting)
