"""Chaos under load must turn red on a broken pipeline: a worker that deletes each message before committing the
job's result (``ack_before_commit``), killed mid-run, loses the jobs it held — the run fails, naming them."""

from __future__ import annotations

import time

import pytest

from harness.oracles.windows import window_family
from harness.programs import scenario
from harness.programs.chaos_load import ChaosLoad

# a run of chaos under load: its p95s and recovery times are verdicts too. Where the test asserts only what turned
# red, it runs beside other tests (red_verdicts); where it asserts that nothing else did, alone (timing)


@pytest.mark.red_verdicts
def test_ack_before_commit_fails_the_scenario_with_the_lost_jobs_named(stack, stack_provider, report_paths):
    sc = scenario.parse(
        {
            "name": "sabotage-ack-before-commit",
            # score uploads only, translations slowed: every worker thread holds a job mid-flight when the kill comes
            "run": {
                "users": 8,
                "spawn_rate": 8,
                "warmup_s": 2,
                "steady_s": 6,
                "workers": 2,
                # long enough for the live workers to finish the backlog (30 uploads at the end of the load, 1.5 s
                # translations), so what is still not terminal is what the killed worker had acknowledged
                "drain_timeout_s": 25,
                "user_classes": ["ScoreUploader"],
            },
            "openai": {"delay_seconds": 1.5},
            "system": {
                "WORKER_SCORE_SLOTS": 4
            },  # every slot may hold a score job (the default keeps half for short ones)
            "window": [
                {
                    "name": "worker_kill",
                    "fault": "worker.kill",
                    "params": {"worker": 0},
                    "duration_s": 3,
                    "recovery_s": 8,
                    "targets": {"recover_s": 3},  # never met: the acknowledged jobs never finish
                }
            ],
        }
    )
    out = ChaosLoad(sc, stack, stack_provider, sabotage="ack_before_commit").run()
    report_paths.append(str(out.report_path))
    assert not out.ok, "the run stayed green over a worker that acknowledges before committing"
    lost = [p for p in out.ledger.problems if "[not_terminal]" in p]
    assert lost, f"no job named as lost: {out.ledger.summary()}"
    # the acknowledged jobs stay 'running' with no message left to bring them back; on a slow machine the live
    # workers' backlog may also outlast the drain, 'queued' or 'running', and is named the same way
    assert any("not terminal in Postgres (running)" in p for p in lost), lost
    assert all("not terminal in Postgres (running)" in p or "(queued)" in p for p in lost), lost
    failing = {v.slo for v in out.verdicts if not v.ok}
    assert {"ledger: not_terminal", "backlog drained (every accepted job terminal)"} <= failing, failing
    # the window's recovery waits for its backlog, and the acknowledged jobs never finish: it never recovers
    recover = next(v for v in out.verdicts if v.slo == "worker_kill: recover_s")
    assert not recover.ok and recover.measured is None, recover.line()
    kill = out.windows[0]
    assert kill["evidence"]["jobs_in_flight_at_kill"] >= 1


@pytest.mark.timing
def test_a_fault_that_met_no_traffic_fails_its_window(stack, stack_provider, report_paths):
    """OpenAI errors while only inference jobs run (they never call it): the window left no trace, so it must not
    pass as if the system had survived it — while the ledger, rightly, stays clean."""
    sc = scenario.parse(
        {
            "name": "sabotage-no-trace",
            "run": {"users": 5, "spawn_rate": 5, "warmup_s": 2, "steady_s": 4, "user_classes": ["InferenceSubmitter"]},
            "window": [
                {
                    "name": "openai_5xx",
                    "fault": "http.error_rate",
                    "params": {"rate": 1.0, "status": 500},
                    "duration_s": 3,
                    "recovery_s": 3,
                }
            ],
        }
    )
    out = ChaosLoad(sc, stack, stack_provider).run()
    report_paths.append(str(out.report_path))
    failing = [v for v in out.verdicts if not v.ok]
    assert [v.slo for v in failing] == ["openai_5xx: the fault reached the system (openai_faulted)"], failing
    assert failing[0].measured == 0
    assert out.ledger.ok and out.ledger.jobs > 0, out.ledger.summary()


@pytest.mark.red_verdicts
def test_a_load_generator_that_dies_makes_the_run_invalid(stack, stack_provider, report_paths):
    """Locust aborted mid-run (SIGABRT, as gevent's libev assertion ends it): the windows after it would be judged on
    no traffic, so the run fails as invalid, naming the exit and how early the load stopped."""
    import signal
    import threading
    import time
    from pathlib import Path

    import psutil

    sc = scenario.parse(
        {
            "name": "sabotage-generator-dies",
            "run": {"users": 4, "spawn_rate": 4, "warmup_s": 2, "steady_s": 3, "user_classes": ["InferenceSubmitter"]},
            "window": [
                {
                    "name": "redis_pause",
                    "fault": "service.pause",
                    "params": {"service": "redis"},
                    "duration_s": 2,
                    "recovery_s": 6,
                }
            ],
        }
    )
    killed: list[int] = []

    first_request: dict[int, float] = {}  # Locust's pid -> when its request log was first seen holding a request

    def abort_locust() -> None:  # once it has sent for 2 s (whenever its start-up ends): during the steady phase
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not killed:
            for p in psutil.Process().children(recursive=True):
                try:
                    if "locust" not in " ".join(p.cmdline()):
                        continue
                    log = Path(p.environ().get("VERISIM_REQUEST_LOG", ""))  # its request log, in its environment
                    if p.pid not in first_request and log.is_file() and log.stat().st_size:
                        first_request[p.pid] = time.monotonic()
                    if time.monotonic() - first_request.get(p.pid, time.monotonic()) > 2:
                        p.send_signal(signal.SIGABRT)
                        killed.append(p.pid)
                except psutil.Error:
                    pass
            time.sleep(0.2)

    threading.Thread(target=abort_locust, daemon=True).start()
    out = ChaosLoad(sc, stack, stack_provider).run()
    report_paths.append(str(out.report_path))
    assert killed, "the test never found Locust to abort"
    failing = {v.slo.split(" — ")[0]: v for v in out.verdicts if not v.ok}
    exited = failing["load generator: Locust exited on its own (0, or 1 with failed requests)"]
    assert exited.measured == -signal.SIGABRT and "invalid" in exited.line(), exited.line()
    early = failing["load generator: requests answered until the load's end (s before it)"]
    assert early.measured is not None and early.measured > 5, (
        early.line()
    )  # the 2 s window and 6 s recovery went unloaded
    assert not out.ok


@pytest.mark.red_verdicts
def test_each_window_target_turns_red_on_the_defect_it_measures(stack, stack_provider, report_paths):
    """One run, four planted defects, every target a window can set red by name, each figure showing its cause: an
    API that answers 0.4 s late (api_p95_ms) with a 503 for jobs it has committed (server_errors, and min_accepted:
    0 from the client journal while the stores hold the jobs), a worker that takes 1 s per job (done_p95_ms,
    min_completed: at most one job per thread per second) and then fails it with an invented reason (failed_jobs and
    the failure budget, which names the reason)."""
    concurrency, duration = 2, 4
    sc = scenario.parse(
        {
            "name": "sabotage-window-targets",
            "run": {
                "users": 2,
                "spawn_rate": 2,
                "warmup_s": 2,
                "steady_s": 2,
                "workers": 1,
                "worker_concurrency": concurrency,
                # the slow worker's backlog (arrivals ~2x what it finishes) drains before the window's jobs fail
                "drain_timeout_s": 40,
                "user_classes": ["InferenceSubmitter"],
            },
            "window": [
                {
                    "name": "pg_latency",
                    "fault": "tcp.latency",
                    "params": {"service": "postgres", "latency_ms": 1},
                    "duration_s": duration,
                    "recovery_s": 2,
                    "targets": {
                        "api_p95_ms": 300,
                        "server_errors": 0,
                        "min_accepted": 1,
                        "done_p95_ms": 800,
                        "min_completed": 30,
                        "failed_jobs": 0,
                    },
                }
            ],
        }
    )
    out = ChaosLoad(
        sc,
        stack,
        stack_provider,
        sabotage="invented_failure,slow_worker",  # slow_worker wraps the failing pipeline: 1 s, then the failure
        api_sabotage="slow_api,refuse_after_accepting",
    ).run()
    report_paths.append(str(out.report_path))
    v = {window_family(x.slo): x for x in out.verdicts if window_family(x.slo)}
    assert v["window: the fault reached the system"].ok, v["window: the fault reached the system"].line()
    red = {k for k, x in v.items() if not x.ok}
    expected = {f"window: {k}" for k in sc.windows[0].targets} | {"window: failed jobs outside the budget"}
    assert red == expected, sorted(red ^ expected)
    fault = out.windows[0]["phases"]["fault"]
    assert v["window: api_p95_ms"].measured >= 400, v["window: api_p95_ms"].line()
    assert v["window: server_errors"].measured >= 1 and fault["refused_by_status"].get("503", 0) >= 1, fault
    assert v["window: min_accepted"].measured == 0 and fault["stored"] >= 1, (
        fault
    )  # the clients' truth, not the stores'
    assert v["window: done_p95_ms"].measured >= 1000, v["window: done_p95_ms"].line()
    assert v["window: min_completed"].measured <= concurrency * (duration + 2), v["window: min_completed"].line()
    assert v["window: failed_jobs"].measured >= 1, v["window: failed_jobs"].line()
    assert "invented_reason" in next(x.slo for x in out.verdicts if "failed jobs outside the budget" in x.slo)
    assert not out.ok
    # the second judge: Prometheus, from the API's own /metrics over the same window, fires on the same two targets
    judged = {r.slo: r for r in out.judges}
    for key in ("api_p95_ms", "server_errors"):
        row = judged[f"pg_latency: {key}"]
        assert row.prometheus.firing and row.agree, row.line()
    assert judged["pg_latency: api_p95_ms"].prometheus.figure >= 0.4
    assert next(x for x in out.verdicts if x.slo.startswith("two judges agree")).ok


@pytest.mark.red_verdicts
def test_a_slow_api_aborts_the_run_early_with_the_slo_named(stack, stack_provider, report_paths):
    """A planted slow API (every submission +0.4 s) against an abort target of 300 ms held for 4 s: the run stops
    long before its 75 s of load, names the target, when and what it measured, and its windows are not run."""
    sc = scenario.parse(
        {
            "name": "sabotage-abort",
            "run": {"users": 4, "spawn_rate": 4, "warmup_s": 2, "steady_s": 40, "workers": 1},
            "abort": {"hold_s": 4, "targets": {"api_p95_ms": 300}},
            "window": [
                {
                    "name": "worker_kill",
                    "fault": "worker.kill",
                    "params": {"worker": 0},
                    "duration_s": 3,
                    "recovery_s": 30,
                }
            ],
        }
    )
    started = time.monotonic()
    out = ChaosLoad(sc, stack, stack_provider, api_sabotage="slow_api").run()
    report_paths.append(str(out.report_path))
    assert out.breach is not None, "the run was not aborted"
    assert out.breach["target"] == "api_p95_ms" and out.breach["measured"] >= 300, out.breach
    load_s = out.phases[-1].end - out.phases[0].start
    assert load_s < sc.load_s / 3, f"aborted after {load_s:.0f} s of {sc.load_s:.0f}"
    failing = {v.slo: v for v in out.verdicts if not v.ok}
    abort = next(v for name, v in failing.items() if name.startswith("abort on breach"))
    assert "api_p95_ms breached from" in abort.line() and "stopped at" in abort.line(), abort.line()
    assert "worker_kill: not run" in failing
    assert out.score is not None and out.score < 100
    print(f"\n{abort.line()}\naborted after {load_s:.1f} s of load ({time.monotonic() - started:.0f} s in all)")
