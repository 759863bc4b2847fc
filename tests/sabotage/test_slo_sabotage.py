"""The SLO gates' teeth: a planted defect in a real API or worker process, a short real load (Locust as a subprocess,
or a burst of jobs), and the shipped ``slo.toml`` must turn the matching verdict red.

Select one with ``-k``: ``slow_api``, ``ws_silent``, ``slow_worker``, ``slow_model``. The queue and backlog SLOs' are in
test_backlog_sabotage.py.
"""

from __future__ import annotations

import pytest

from harness.oracles import slo, two_judges
from harness.programs import load
from tests.sabotage.short_load import short_load

# its verdicts are times. Those that assert only red (a planted 0.4 s, a silent feed, a worker slowed 1 s a job) run
# beside other tests (red_verdicts: a neighbour can only make them redder); one that judges against a ceiling measured
# in the same run whose contention could turn it green (the raw forward pass), runs alone (timing)


def verdicts(section: str, figures: dict) -> dict[str, slo.Verdict]:
    return {v.slo: v for v in slo.evaluate(slo.section(slo.load(), section), figures)}


@pytest.mark.red_verdicts
def test_slow_api_fails_the_submission_latency_slo(chaos_system, stack):
    sut = chaos_system(workers=1, api_sabotage="slow_api")
    figures = short_load(stack, sut, 4)
    v = verdicts("api", figures)["api POST /api/v1/inference p95 ms"]
    # every request carries the planted 0.4 s, so a few are enough to show it (a busy CI machine gave 16 in 12 s)
    assert figures["api"]["POST /api/v1/inference"]["requests"] >= 10
    assert not v.ok and v.measured >= 400, v.line()  # the planted 0.4 s, measured by Locust, over the target
    assert "FAIL" in v.line() and "POST /api/v1/inference" in v.line()
    p99 = verdicts("api", figures)["api POST /api/v1/inference p99 ms"]
    assert not p99.ok and p99.measured >= 400, p99.line()
    # the second judge: Prometheus' alerts from the same slo.toml over the API's own /metrics fire too, and agree
    full = slo.evaluate(slo.load(), figures)
    rows = {r.slo: r for r in two_judges.judge(slo.load(), full, figures)}
    print("\n" + two_judges.table(list(rows.values())))
    for name in ("api POST /api/v1/inference p95 ms", "api POST /api/v1/inference p99 ms"):
        row = rows[name]
        assert row.prometheus.firing and row.prometheus.figure >= 0.4 and row.agree, row.line()
    assert full[-1].ok, full[-1].line()  # the judges agree on every SLO both measured


@pytest.mark.red_verdicts
def test_ws_silent_fails_the_websocket_slo(chaos_system, stack):
    sut = chaos_system(workers=1, api_sabotage="ws_silent")
    figures = short_load(stack, sut, 8, ["InferenceSubmitter", "FeedWatcher"])
    ws = figures["api"]["/api/v1/dashboard/ws"]
    assert ws["requests"] >= 3 and figures["jobs"] > 0  # jobs ran, so an honest feed would have pushed events
    v = verdicts("api", figures)["api /api/v1/dashboard/ws error rate"]
    assert not v.ok and v.measured == 1.0, v.line()  # every WebSocket wait ended without an event: all failures
    # the second judge reads the same client's figures, as Prometheus scraped them from Locust, and fires too
    rows = {r.slo: r for r in two_judges.judge(slo.load(), slo.evaluate(slo.load(), figures), figures)}
    row = rows["api /api/v1/dashboard/ws error rate"]
    assert row.prometheus.firing and row.prometheus.figure == 1.0 and row.agree, row.line()


@pytest.mark.red_verdicts
def test_slow_worker_fails_the_capacity_gate(chaos_system, stack):
    """A burst through workers 5x slower fails the capacity gate and the drain gate. Its honest twin is
    tests/load/test_load_holds_the_slos.py, whose capacity burst (the same 300 jobs, through the same workers unslowed)
    must pass the same gate. Red here needs no quiet machine: a neighbour slows the slowed workers further, and the
    raw ceiling it divides by would have to read under ~100 msg/s for them to come near the gate (they measure
    0.002-0.003 of it alone, 2-3 jobs/s; the gate is 0.11)."""
    from harness.drivers.throughput import sqs_ceiling

    ceiling = sqs_ceiling(stack.aws, 1000)
    slow = chaos_system(workers=2, sabotage="slow_worker")
    bad = load.capacity(stack, slow.api_url, ceiling, requests=8, label="slow_worker")
    bad_v = verdicts("throughput", {"capacity": bad})["capacity jobs/s / raw SQS ceiling"]
    print(f"\nslow_worker: {bad_v.line()} ({bad['jobs_per_s']} jobs/s)")
    assert bad["terminal"] == 40 and bad["jobs_per_s"] <= 10  # 2 workers x 4 slots, each job 1 s longer
    assert not bad_v.ok and bad_v.measured < slo.load()["throughput"]["min_capacity_share_of_sqs_ceiling"] / 2
    drained = slo.drain_verdict(bad["share_of_ceiling"])  # the throughput benchmark's gate, the same ratio
    assert not drained.ok and "drain jobs/s / raw SQS ceiling" in drained.line(), drained.line()


@pytest.mark.timing
def test_slow_model_fails_the_model_latency_gate(chaos_system, stack):
    """The LSTM's latency in the system is judged against a raw forward pass timed in the same run: a worker whose
    forward passes take 0.1 s longer fails it; its moving average, 1 ms slower, fails its own target."""
    sut = chaos_system(workers=1, sabotage="slow_model")
    figures = short_load(stack, sut, 3, ceilings=("lstm",))
    got = verdicts("models", figures)
    v = got["model lstm latency p95 / raw forward"]
    assert figures["models"]["lstm"]["count"] >= 10 and figures["models"]["lstm"]["p95_ms"] >= 100
    assert not v.ok and v.measured > slo.load()["models"]["lstm"]["p95_over_raw_max"], v.line()
    assert "FAIL" in v.line() and figures["model_ceilings"]["lstm"]["median_ms"] > 0
    ma = got["model moving_average latency p95 ms"]
    assert not ma.ok and ma.measured >= 1, ma.line()
