"""SLO evaluation and the report, on figures made up for the purpose (no stack)."""

from __future__ import annotations

import json

import pytest

from harness.oracles import slo
from harness.reports import report

SLOS = {
    "api": {"p95_ms": 100, "error_rate": 0.01, "POST /x": {"p95_ms": 50}},
    "queue": {"inference": {"wait_p95_ms": 1000, "done_p95_ms": 2000}, "score": {"wait_p95_ms": 1, "done_p95_ms": 1}},
    "throughput": {"min_jobs_per_s": 5},
    "backlog": {"drain_max_s": 10},
    "delivery": {"max_dlq_messages": 0, "max_redelivered_jobs": 0, "max_failed_jobs": 0},
    "models": {"lstm": {"p95_ms": 20}},
}


def figures(**over):
    f = {
        "api": {
            "POST /x": {
                "requests": 100,
                "failures": 0,
                "error_rate": 0.0,
                "p50_ms": 10,
                "p95_ms": 40,
                "p99_ms": 60,
                "rps": 10,
            },
            "GET /y": {
                "requests": 100,
                "failures": 2,
                "error_rate": 0.02,
                "p50_ms": 10,
                "p95_ms": 90,
                "p99_ms": 95,
                "rps": 10,
            },
        },
        "queue": {
            "inference": {
                "jobs": 10,
                "wait_p50_ms": 10,
                "wait_p95_ms": 500,
                "done_p50_ms": 20,
                "done_p95_ms": 2500,
                "stages": {"model:lstm": {"runs": 10, "p50_ms": 2, "p95_ms": 5, "max_ms": 7.25}},
            }
        },
        "throughput_jobs_per_s": 7.5,
        "drain_s": 3.0,
        "dlq_messages": 0,
        "redelivered_jobs": 1,
        "failed_jobs": 0,
        "models": {"lstm": {"count": 10, "p50_ms": 2, "p95_ms": 5}},
        "jobs": 10,
        "by_status": {"completed": 10},
        "api_history": [
            {"t": 100, "users": 5, "rps": 10, "p50_ms": 10, "p95_ms": 40, "failures_per_s": 0},
            {"t": 101, "users": 5, "rps": 12, "p50_ms": 11, "p95_ms": 45, "failures_per_s": 0},
        ],
        "queue_depth": [{"t": 100.5, "waiting": 3, "in_flight": 2, "dlq": 0}],
        "finished_times": [100.2, 101.7],
        "users": 5,
        "duration_s": 2,
    }
    f.update(over)
    return f


def test_every_slo_is_judged_with_its_measured_value():
    verdicts = {v.slo: v for v in slo.evaluate(SLOS, figures())}
    assert verdicts["api POST /x p95 ms"].ok and verdicts["api POST /x p95 ms"].target == "<= 50"
    assert not verdicts["api GET /y error rate"].ok and verdicts["api GET /y error rate"].measured == 0.02
    assert verdicts["api GET /y p95 ms"].ok  # the default applies to endpoints not listed
    assert not verdicts["queue inference enqueue->done p95 ms"].ok
    # a kind the SLO file names but the run never measured is a failed verdict, never a silent pass
    assert not verdicts["queue score enqueue->start p95 ms"].ok
    assert verdicts["queue score enqueue->start p95 ms"].measured is None
    assert verdicts["throughput jobs/s"].ok and verdicts["throughput jobs/s"].target == ">= 5"
    assert not verdicts["redelivered jobs"].ok and verdicts["model lstm latency p95 ms"].ok
    assert "FAIL" in verdicts["redelivered jobs"].line() and "measured 1" in verdicts["redelivered jobs"].line()


def test_a_missing_figure_fails_rather_than_passes():
    verdicts = {v.slo: v for v in slo.evaluate(SLOS, figures(drain_s=None))}
    assert not verdicts["backlog drain s"].ok and verdicts["backlog drain s"].measured is None


def test_every_named_slo_without_a_measurement_fails():
    """An endpoint, queue kind or model the SLO file names and the run never measured fails as n/a."""
    slos = {
        **SLOS,
        "api": {**SLOS["api"], "/ws": {"p95_ms": 1000, "error_rate": 0.01}},
        "models": {"lstm": {"p95_ms": 20}, "moving_average": {"p95_ms": 1}},
    }
    verdicts = {v.slo: v for v in slo.evaluate(slos, figures())}
    for name in (
        "api /ws p95 ms",
        "api /ws error rate",
        "model moving_average latency p95 ms",
        "queue score enqueue->done p95 ms",
    ):
        assert not verdicts[name].ok and verdicts[name].measured is None, name
        assert "FAIL" in verdicts[name].line() and "n/a" in verdicts[name].line()


def test_capacity_is_judged_against_the_same_runs_sqs_ceiling():
    slos = slo.section({"throughput": {"min_capacity_share_of_sqs_ceiling": 0.04}, "api": {"p95_ms": 1}}, "throughput")
    ok = slo.evaluate(slos, {"capacity": {"jobs_per_s": 60, "share_of_ceiling": 0.05}})
    slow = slo.evaluate(slos, {"capacity": {"jobs_per_s": 12, "share_of_ceiling": 0.01}})
    missing = slo.evaluate(slos, {})
    assert [v.ok for v in ok] == [True] and len(ok) == 1  # section() kept only the throughput SLO
    assert [v.ok for v in slow] == [False] and slow[0].slo == "capacity jobs/s / raw SQS ceiling"
    assert [v.ok for v in missing] == [False]


def test_model_latency_is_judged_against_the_same_runs_raw_forward_pass():
    slos = {"models": {"lstm": {"p95_over_raw_max": 40}}}
    ceiling = {"model_ceilings": {"lstm": {"median_ms": 0.5}}}
    ok = slo.evaluate(slos, figures(**ceiling))  # 5 ms / 0.5 ms
    slow = slo.evaluate(slos, figures(models={"lstm": {"p95_ms": 30}}, **ceiling))
    unmeasured = slo.evaluate(slos, figures())  # no ceiling in the run: n/a, a failure
    assert [(v.slo, v.measured, v.ok) for v in ok] == [("model lstm latency p95 / raw forward", 10.0, True)]
    assert [(v.measured, v.ok) for v in slow] == [(60.0, False)] and "FAIL" in slow[0].line()
    assert [(v.measured, v.ok) for v in unmeasured] == [(None, False)]


def test_the_drain_benchmark_is_judged_by_its_own_gate():
    gates = {"bench": {"drain_share_of_sqs_ceiling_min": 0.19}}
    assert slo.drain_verdict(0.25, gates).ok
    late = slo.drain_verdict(0.13, gates)  # what the one-message-per-commit worker measured
    assert not late.ok and "drain jobs/s / raw SQS ceiling" in late.line() and "0.13" in late.line()
    assert not slo.drain_verdict(None, gates).ok  # not measured: fails
    assert (
        slo.load()["bench"]["drain_share_of_sqs_ceiling_min"]
        > slo.load()["throughput"]["min_capacity_share_of_sqs_ceiling"]
    )  # the long drains run nearer the ceiling than a 300-job burst


def test_the_transports_benchmark_is_judged_by_its_own_gate():
    gates = {"bench": {"celery_over_sqs_min": 0.9}}
    assert slo.celery_verdict(1.1, gates).ok
    slow = slo.celery_verdict(0.45, gates)  # what the one-job-per-task Celery worker measured against SQS
    assert not slow.ok and "Celery jobs/s / SQS jobs/s" in slow.line() and "0.45" in slow.line()
    assert not slo.celery_verdict(None, gates).ok  # not measured: fails
    assert slo.load()["bench"]["celery_over_sqs_min"] > 0.45


def test_the_shipped_slo_file_parses():
    shipped = slo.load()
    assert shipped["api"]["POST /api/v1/inference"]["p95_ms"] > 0 and "lstm" in shipped["models"]


def test_report_has_plots_verdicts_and_the_diff_to_the_previous_run(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "REPORTS", tmp_path)
    first = report.new_run_dir()
    report.write(first, figures(), slo.evaluate(SLOS, figures()))
    second = report.new_run_dir()
    faults = [{"name": "rate_limit", "start": 100.5, "end": 101.0}]
    path = report.write(second, figures(throughput_jobs_per_s=3.0), slo.evaluate(SLOS, figures()), faults)
    doc = json.loads((second / "report.json").read_text())
    row = next(d for d in doc["diff"] if d["figure"] == "throughput jobs/s")
    assert (row["now"], row["previous"], row["change_pct"], row["worse"]) == (3.0, 7.5, -60.0, True)
    page = path.read_text()
    assert page.count("<svg") == 3 and 'class="fault"' in page and "rate_limit" in page
    assert "SLO verdicts" in page and "FAIL" in page and "Against the previous run" in page
    assert "Pipeline stages" in page and "model:lstm" in page and "7.25" in page  # where a kind's time went


def test_the_diff_marks_only_moves_beyond_the_noise_band():
    before = {"figures": {"throughput_jobs_per_s": 100.0, "drain_s": 10.0}}
    now = {"figures": {"throughput_jobs_per_s": 93.0, "drain_s": 13.0}}
    rows = {r["figure"]: r for r in report.diff(now, before, bands={"throughput jobs/s": 8, "backlog drain s": 25})}
    assert rows["throughput jobs/s"]["change_pct"] == -7.0 and not rows["throughput jobs/s"]["worse"]  # noise
    assert rows["backlog drain s"]["change_pct"] == 30.0 and rows["backlog drain s"]["worse"]  # beyond its band
    assert rows["backlog drain s"]["noise_band_pct"] == 25
    faster = {"figures": {"throughput_jobs_per_s": 150.0, "drain_s": 1.0}}
    assert not any(r["worse"] for r in report.diff(faster, before, bands={}))  # better is never "worse"


@pytest.mark.parametrize(
    "ceilings, burst", [((), 60), (("lstm",), 60), (("sqs", "gpu"), 0)], ids=["burst-none", "burst-lstm", "unknown"]
)
def test_a_load_run_refuses_ceilings_its_verdicts_cannot_use(ceilings, burst):
    """``load.measure`` times the raw ceilings a run's verdicts divide by, and only those: a capacity burst (judged
    as a share of the SQS ceiling) without that ceiling, or a ceiling it cannot time, is refused before any load."""
    from harness.programs import load

    with pytest.raises(ValueError, match="ceilings"):
        load.measure(None, "", "", "", 1, 1, None, burst_requests=burst, ceilings=ceilings)
