"""Health is progress: pending work with no advance, unmeasurable work, or an SLA breach is a 503."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import uuid

import pytest
from prometheus_client import REGISTRY

from services.core import logs, metrics
from services.core.errors import ConfigurationError
from services.core.health import Health, Progress
from services.core.ops import OpsServer, address

LAG = {("views.railway", 0): 0, ("views.railway", 1): 0}


def progress_at(clock: list[float]) -> Progress:
    return Progress("copy-railway", stall_after_s=10, clock=lambda: clock[0])


def test_an_idle_service_with_nothing_to_do_is_healthy_however_long_it_idles() -> None:
    clock = [0.0]
    progress = progress_at(clock)
    clock[0] = 3600.0
    health = progress.judge(LAG)
    assert health.healthy and health.status_code == 200
    assert health.body()["pending"] == 0 and health.body()["idle_s"] == 3600.0


def test_work_pending_and_no_advance_within_the_threshold_is_not_progress() -> None:
    clock = [0.0]
    progress = progress_at(clock)
    progress.advance(applied=2)
    lag = {("views.railway", 0): 4, ("views.railway", 1): 1}
    assert progress.judge(lag).healthy  # the first look that sees the work waiting
    clock[0] = 9.0
    assert progress.judge(lag).healthy  # still within the threshold
    clock[0] = 11.0
    health = progress.judge(lag)
    assert health.status_code == 503
    assert health.reasons == ("5 pending and nothing handled for 11 s (threshold 10 s): not making progress",)
    assert health.body()["lag"] == {"views.railway[0]": 4, "views.railway[1]": 1}
    assert health.body()["applied"] == 2
    progress.advance(applied=1)
    assert progress.judge(lag).healthy and progress.judge(lag).body()["applied"] == 3


def test_new_work_after_a_long_idle_is_not_a_stall_at_first_sight() -> None:
    """The clock runs from the first look that saw the work pending, not from the last advance."""
    clock = [0.0]
    progress = progress_at(clock)
    clock[0] = 3600.0
    lag = {("views.railway", 0): 1}
    assert progress.judge(lag).healthy  # first look: the change may have arrived a moment ago
    clock[0] = 3605.0
    assert progress.judge(lag).healthy
    clock[0] = 3611.0
    assert progress.judge(lag).reasons[0].startswith("1 pending and nothing handled for 11 s")
    assert progress.judge(dict.fromkeys(lag, 0)).healthy  # caught up by other means: the clock resets
    clock[0] = 3700.0
    assert progress.judge(lag).healthy


def test_unmeasurable_work_and_an_sla_breach_are_each_unhealthy() -> None:
    progress = progress_at([0.0])
    assert not progress.judge(None).healthy
    assert "cannot be measured" in progress.judge(None).reasons[0]
    behind = progress.judge(LAG, behind="copy 400 s behind its SLA of 60 s")
    assert behind.status_code == 503 and behind.reasons == ("copy 400 s behind its SLA of 60 s",)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_ops_endpoint_answers_the_verdict_and_the_metrics() -> None:
    verdict = [Health("ledger", True, ())]
    server = OpsServer("127.0.0.1:0", lambda: verdict[0])
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, body = get(f"{base}/health")
        assert status == 200 and json.loads(body)["healthy"] is True
        verdict[0] = Health("ledger", False, ("stalled",), {"pending": 3})
        status, body = get(f"{base}/health")
        assert status == 503 and json.loads(body) == {
            "service": "ledger", "healthy": False, "reasons": ["stalled"], "pending": 3,
        }  # fmt: skip
        status, body = get(f"{base}/metrics")
        assert status == 200 and b"# TYPE accord_events_handled_total counter" in body
        assert get(f"{base}/elsewhere")[0] == 404
    finally:
        server.close()


def test_a_judgement_that_fails_is_an_unhealthy_answer_not_a_dead_endpoint() -> None:
    def broken() -> Health:
        raise RuntimeError("boom")

    server = OpsServer("127.0.0.1:0", broken)
    try:
        assert get(f"http://127.0.0.1:{server.port}/health")[0] == 503
    finally:
        server.close()


def test_a_port_already_taken_is_a_clear_error() -> None:
    server = OpsServer("127.0.0.1:0", lambda: Health("ledger", True, ()))
    try:
        with pytest.raises(
            ConfigurationError, match=f"cannot serve /health and /metrics on 127.0.0.1:{server.port}"
        ):
            OpsServer(f"127.0.0.1:{server.port}", lambda: Health("copy", True, ()))
    finally:
        server.close()


def test_an_ops_address_is_host_and_port() -> None:
    assert address("0.0.0.0:9464") == ("0.0.0.0", 9464)
    assert address(":9464") == ("127.0.0.1", 9464)
    with pytest.raises(ConfigurationError, match="HOST:PORT"):
        address("9464x")


def test_json_logs_are_one_object_per_line_with_the_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved, chosen = (root.handlers[:], root.level), logs._chosen[:]
    try:
        assert logs.configure(as_json=True)
        logging.getLogger("accord.copy").warning("applied %d changes", 3, extra={"agency": "railway"})
        try:
            raise ValueError("bad row")
        except ValueError:
            logging.getLogger("accord.copy").exception("failed")
    finally:  # the process's choice too, or every later client config would ask for JSON logs
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        logs._chosen[:] = chosen
        logging.captureWarnings(False)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["message"] == "applied 3 changes" and lines[0]["agency"] == "railway"
    assert (lines[0]["level"], lines[0]["logger"]) == ("WARNING", "accord.copy")
    assert lines[0]["time"].endswith("+00:00")
    assert "ValueError: bad row" in lines[1]["exc_info"]


def test_a_partition_lost_in_a_rebalance_stops_showing_a_lag() -> None:
    def lag(service: str, topic: str, partition: int) -> float | None:
        return REGISTRY.get_sample_value(
            "accord_consumer_lag", {"service": service, "topic": topic, "partition": str(partition)}
        )

    service = f"test-{uuid.uuid4().hex[:6]}"
    metrics.record(Health(service, True, ()), {("t.listings", 0): 5, ("t.listings", 1): 7})
    assert (lag(service, "t.listings", 0), lag(service, "t.listings", 1)) == (5, 7)
    metrics.record(Health(service, True, ()), {("t.listings", 1): 2})  # partition 0 went to another worker
    assert (lag(service, "t.listings", 0), lag(service, "t.listings", 1)) == (None, 2)
    metrics.record(Health(service, False, ("lag unknown",)), None)  # unmeasured: what was shown stays
    assert lag(service, "t.listings", 1) == 2
