"""Chaos under load must turn red on a broken pipeline: a worker that deletes each message before committing the
job's result (``ack_before_commit``), killed mid-run, loses the jobs it held — the run fails, naming them."""

from __future__ import annotations

import pytest

from harness import scenario
from harness.chaos_load import ChaosLoad

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
                    "targets": {"recover_s": 10},
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

    def abort_locust() -> None:  # 4 s after Locust starts: during the steady phase
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for p in psutil.Process().children(recursive=True):
                try:
                    if "locust" in " ".join(p.cmdline()) and time.time() - p.create_time() > 4:
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
