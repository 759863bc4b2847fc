"""The SLO gates' teeth: a planted defect in a real API or worker process, a short real load (Locust as a subprocess,
or a burst of jobs), and the shipped ``slo.toml`` must turn the matching verdict red.

Select one with ``-k``: ``slow_api``, ``ws_silent``, ``slow_worker``, ``slow_model``.
"""

from __future__ import annotations

import pytest

from harness import load, report, slo

pytestmark = pytest.mark.timing  # its verdicts are times: never beside another test

SECONDS = 12  # of Locust per test: enough for ~100 requests of the kind under test


def verdicts(section: str, figures: dict) -> dict[str, slo.Verdict]:
    return {v.slo: v for v in slo.evaluate(slo.section(slo.load(), section), figures)}


def test_slow_api_fails_the_submission_latency_slo(chaos_system, stack):
    sut = chaos_system(workers=1, api_sabotage="slow_api")
    figures = load.measure(
        stack,
        sut.api_url,
        sut.queue_name,
        sut.dlq_name,
        4,
        SECONDS,
        report.new_run_dir(),
        user_classes=["InferenceSubmitter"],
        burst_requests=0,
        reset_stats=False,  # 12 s: every request counts
    )
    v = verdicts("api", figures)["api POST /api/v1/inference p95 ms"]
    assert figures["api"]["POST /api/v1/inference"]["requests"] >= 20
    assert not v.ok and v.measured >= 400, v.line()  # the planted 0.4 s, measured by Locust, over the target
    assert "FAIL" in v.line() and "POST /api/v1/inference" in v.line()


def test_ws_silent_fails_the_websocket_slo(chaos_system, stack):
    sut = chaos_system(workers=1, api_sabotage="ws_silent")
    figures = load.measure(
        stack,
        sut.api_url,
        sut.queue_name,
        sut.dlq_name,
        8,
        SECONDS,
        report.new_run_dir(),
        user_classes=["InferenceSubmitter", "FeedWatcher"],
        burst_requests=0,
        reset_stats=False,  # 12 s: every request counts
    )
    ws = figures["api"]["/api/v1/dashboard/ws"]
    assert ws["requests"] >= 3 and figures["jobs"] > 0  # jobs ran, so an honest feed would have pushed events
    v = verdicts("api", figures)["api /api/v1/dashboard/ws error rate"]
    assert not v.ok and v.measured == 1.0, v.line()  # every WebSocket wait ended without an event: all failures


def test_slow_worker_fails_the_capacity_gate(chaos_system, stack):
    """The same burst through honest workers passes the capacity gate; through workers 5x slower it fails."""
    from harness.throughput import sqs_ceiling

    ceiling = sqs_ceiling(stack.aws, 1000)
    honest = chaos_system(workers=2)
    fine = load.capacity(stack, honest.api_url, ceiling, requests=60, label="honest")
    honest.stop()
    slow = chaos_system(workers=2, sabotage="slow_worker")
    bad = load.capacity(stack, slow.api_url, ceiling, requests=16, label="slow_worker")
    ok_v = verdicts("throughput", {"capacity": fine})["capacity jobs/s / raw SQS ceiling"]
    bad_v = verdicts("throughput", {"capacity": bad})["capacity jobs/s / raw SQS ceiling"]
    print(f"\nhonest: {ok_v.line()} ({fine['jobs_per_s']} jobs/s); slow_worker: {bad_v.line()}")
    assert (fine["terminal"], bad["terminal"]) == (300, 80)
    assert ok_v.ok, f"honest workers miss the capacity gate: {ok_v.line()} ({fine['jobs_per_s']} jobs/s)"
    assert fine["jobs_per_s"] >= 5 * bad["jobs_per_s"], (fine, bad)
    assert not bad_v.ok, bad_v.line()
    drained = slo.drain_verdict(bad["share_of_ceiling"])  # the throughput benchmark's gate, the same ratio
    assert not drained.ok and "drain jobs/s / raw SQS ceiling" in drained.line(), drained.line()


def test_slow_model_fails_the_model_latency_gate(chaos_system, stack):
    """The LSTM's latency in the system is judged against a raw forward pass timed in the same run: a worker whose
    forward passes take 0.1 s longer fails it, while the moving average beside it still passes."""
    sut = chaos_system(workers=1, sabotage="slow_model")
    figures = load.measure(
        stack,
        sut.api_url,
        sut.queue_name,
        sut.dlq_name,
        3,
        SECONDS,
        report.new_run_dir(),
        user_classes=["InferenceSubmitter"],
        burst_requests=0,
        reset_stats=False,
    )
    got = verdicts("models", figures)
    v = got["model lstm latency p95 / raw forward"]
    assert figures["models"]["lstm"]["count"] >= 10 and figures["models"]["lstm"]["p95_ms"] >= 100
    assert not v.ok and v.measured > slo.load()["models"]["lstm"]["p95_over_raw_max"], v.line()
    assert "FAIL" in v.line() and figures["model_ceilings"]["lstm"]["median_ms"] > 0
    assert got["model moving_average latency p95 ms"].ok, got["model moving_average latency p95 ms"].line()
