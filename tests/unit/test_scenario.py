"""The scenario format (every mistake named with where it is) and the chaos-under-load arithmetic (time to recover),
without a stack."""

from __future__ import annotations

import pytest

from harness.faults.catalog import CATALOG, SERVICES
from harness.oracles.windows import (
    failure_budget_verdict,
    generator_verdicts,
    time_to_recover,
    why_not_recovered,
    window_verdicts,
)
from harness.programs import scenario

BASE = {"window": [{"name": "w", "fault": "service.restart", "params": {"service": "redis"}, "duration_s": 5}]}


def test_shipped_scenarios_parse_and_cover_what_they_promise():
    full = scenario.load("full")
    faults = {w.fault for w in full.windows}
    assert faults >= {
        "http.delay",
        "http.error_rate",
        "http.rate_limit",
        "http.timeout",
        "http.malformed_json",
        "http.connection_drop",
        "worker.kill",
        "worker.pause",
        "service.restart",
        "service.kill",
        "tcp.latency",
        "tcp.reset_peer",
        "tcp.timeout",
    }
    restarted = {w.service for w in full.windows if w.fault == "service.restart"}
    assert restarted == set(SERVICES)
    for toxic in ("tcp.latency", "tcp.reset_peer", "tcp.timeout"):
        assert {w.service for w in full.windows if w.fault == toxic} == set(SERVICES)
    assert full.users == 20
    ci = scenario.load("ci")
    families = {f.family for f in CATALOG.values()}
    assert {w.family for w in ci.windows} == families and ci.users == 20  # every family, in CI
    assert {"tcp.partition", "aws.api_errors", "host.cpu_pressure", "disk.full"} <= {w.fault for w in ci.windows}
    # it runs inside the README test command: at most this long, and shorter when recoveries are quick (a recovery
    # phase ends as soon as recovery is seen)
    assert ci.load_s <= 240
    assert ci.steady_state and ci.abort["targets"]  # checked before the first fault and after the last, abortable
    new = {
        "tcp.partition",
        "aws.api_errors",
        "host.cpu_pressure",
        "host.memory_pressure",
        "worker.clock_skew",
        "disk.full",
        "worker.memory_cap",
    }
    assert new <= faults and any(w.params.get("toxicity", 1) < 1 for w in full.windows)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"window": [{"name": "w", "fault": "http.teleport", "duration_s": 1}]}, "unknown fault 'http.teleport'"),
        (
            {"window": [{"name": "w", "fault": "service.restart", "duration_s": 1}]},
            "service.restart needs params.service",
        ),
        (
            {"window": [{"name": "w", "fault": "service.restart", "params": {"service": "mysql"}, "duration_s": 1}]},
            "params.service = 'mysql'; choose from postgres, redis, kafka, localstack",
        ),
        (
            {
                "window": [
                    {"name": "w", "fault": "tcp.latency", "params": {"service": "redis", "latency": 5}, "duration_s": 1}
                ]
            },
            "unknown key(s) latency",
        ),
        ({"window": [{"name": "w", "fault": "worker.kill"}]}, "missing `duration_s`"),
        ({**BASE, "run": {"userz": 3}}, "[run]: unknown key(s) userz"),
        ({**BASE, "defaults": {"targets": {"recover_in": 3}}}, "unknown key(s) recover_in"),
        ({**BASE, "ledger": {"lots": 1}}, "[ledger]: unknown key(s) lots"),
        ({"window": BASE["window"] * 2}, "window names must be unique; repeated: w"),
        ({}, "no [[window]]"),
    ],
)
def test_a_mistake_is_named_where_it_is(doc, words):
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.parse(doc)
    assert words in str(err.value)


def test_defaults_merge_and_only_selects_windows():
    sc = scenario.parse(
        {
            "defaults": {"recovery_s": 27, "targets": {"recover_s": 9, "server_errors": 0}},
            "window": [
                {"name": "a", "fault": "worker.kill", "duration_s": 2, "targets": {"recover_s": 20}},
                {"name": "b", "fault": "worker.pause", "duration_s": 3, "recovery_s": 14},
            ],
        }
    )
    a, b = sc.windows
    assert a.recovery_s == 27 and a.targets == {"recover_s": 20, "server_errors": 0}
    assert b.recovery_s == 14 and b.targets == {"recover_s": 9, "server_errors": 0}
    assert [w.name for w in sc.only(["b"]).windows] == ["b"]
    with pytest.raises(scenario.ScenarioError, match="no window named c"):
        sc.only(["c"])
    assert sc.load_s == 10 + 20 + (2 + 27) + (3 + 14)


def jobs(*spec):
    """(enqueued, done) pairs, done None = not finished."""
    return [{"enq": e, "done": d} for e, d in spec]


def test_recovered_when_the_backlog_drained_and_latency_is_back():
    # fault ends at 100; the backlog accepted before it finishes at 103; jobs accepted from 100 on take 0.1 s
    js = jobs((95, 101.0), (99, 103.0), *[(100 + i * 0.5, 100.1 + i * 0.5) for i in range(30)])
    assert time_to_recover(js, 100, 120, steady_p95_ms=100, tolerance=1.5) == 3.0


def test_not_recovered_while_latency_stays_high_or_a_job_never_ends():
    slow = jobs(*[(100 + i * 0.5, 102 + i * 0.5) for i in range(30)])  # 2 s each, steady was 0.1 s
    assert time_to_recover(slow, 100, 115, steady_p95_ms=100, tolerance=2) is None
    stuck = jobs((99, None), *[(100 + i * 0.5, 100.1 + i * 0.5) for i in range(30)])
    assert time_to_recover(stuck, 100, 115, steady_p95_ms=100, tolerance=2) is None
    assert time_to_recover(jobs((100, 100.1)), 100, 115, steady_p95_ms=None, tolerance=2) is None


def test_a_window_not_recovered_says_what_each_slice_showed():
    slow = jobs(*[(100 + i * 0.5, 100.3 + i * 0.5) for i in range(30)]) + jobs((107.5, None))  # 0.3 s each, one open
    lines = why_not_recovered(slow, 100, 112, steady_p95_ms=100, tolerance=2)
    assert time_to_recover(slow, 100, 112, steady_p95_ms=100, tolerance=2) is None
    assert lines[0] == "+0s: 10 jobs, 0 open; p95/most  300/200 ms"
    assert lines[-1] == "+7s: 11 jobs, 1 open; p95/most  300/200 ms" and len(lines) == 8
    assert why_not_recovered(slow, 100, 112, steady_p95_ms=None, tolerance=2) == [
        "no steady enqueue->done p95 to recover to"
    ]


def test_recovery_found_later_in_the_phase():
    # slow until 106, fast after: the first 5 s slice whose p95 is back starts at 106
    js = jobs(*[(100 + i * 0.5, 100 + i * 0.5 + (3 if 100 + i * 0.5 < 106 else 0.05)) for i in range(40)])
    assert time_to_recover(js, 100, 125, steady_p95_ms=100, tolerance=1.5) == 6.0


def test_a_straggler_counts_against_its_own_window_only():
    # a job accepted at 60, during the previous window (fault ended at 70), finishes only at 130: it keeps that
    # window from recovering, not the one whose fault ends at 100
    js = jobs((60, 130.0), (95, 101.0), *[(100 + i * 0.5, 100.1 + i * 0.5) for i in range(30)])
    assert time_to_recover(js, 100, 120, steady_p95_ms=100, tolerance=1.5, since=70) == 1.0
    assert time_to_recover(js, 100, 120, steady_p95_ms=100, tolerance=1.5) == 30.0
    stuck_earlier = jobs((60, None), *[(100 + i * 0.5, 100.1 + i * 0.5) for i in range(30)])
    assert time_to_recover(stuck_earlier, 100, 115, steady_p95_ms=100, tolerance=2, since=70) == 0.0


def test_a_job_as_slow_as_its_kind_is_in_steady_state_does_not_hold_recovery_open():
    # steady: inference 0.1 s, score 8 s. A score accepted at 99 and done at 107 took its kind's usual time; the
    # same score done at 125 was held back by the fault, and recovery waits for it
    fast = [(100 + i * 0.5, 100.1 + i * 0.5) for i in range(30)]
    usual = [
        {"enq": 99, "done": 107.0, "kind": "score"},
        *({"enq": e, "done": d, "kind": "inference"} for e, d in fast),
    ]
    kinds = {"inference": 100, "score": 8000}
    assert time_to_recover(usual, 100, 120, steady_p95_ms=100, tolerance=1.5, kind_p95_ms=kinds) == 0.0
    held = [{**usual[0], "done": 125.0}, *usual[1:]]
    assert time_to_recover(held, 100, 120, steady_p95_ms=100, tolerance=1.5, kind_p95_ms=kinds) == 25.0
    # without the per-kind figures every job is held to the steady p95 of all jobs
    assert time_to_recover(usual, 100, 120, steady_p95_ms=100, tolerance=1.5) == 7.0


def test_the_slice_after_a_fault_is_judged_kind_by_kind():
    # a slice of twenty inference jobs back at 0.1 s and two score jobs at their usual 2 s: recovered, though the
    # slice's mixed p95 is a score's 2 s. The same slice with inference still at 0.5 s is not.
    kinds = {"inference": 100, "score": 2000}
    scores = [{"enq": 100.5 + i, "done": 102.5 + i, "kind": "score"} for i in range(2)]
    fast = [{"enq": 100 + i * 0.25, "done": 100.1 + i * 0.25, "kind": "inference"} for i in range(20)]
    assert time_to_recover(fast + scores, 100, 105, steady_p95_ms=150, tolerance=2, kind_p95_ms=kinds) == 0.0
    slow = [{**j, "done": j["enq"] + 0.5} for j in fast]
    assert time_to_recover(slow + scores, 100, 105, steady_p95_ms=150, tolerance=2, kind_p95_ms=kinds) is None


@pytest.mark.parametrize(
    "key, limit, bad, good",
    [
        ("recover_s", 30, 31.5, 2.0),
        ("server_errors", 0, 3, 0),
        ("api_p95_ms", 500, 900, 120),
        ("done_p95_ms", 5000, 7000, 800),
        ("min_completed", 10, 4, 40),
        ("min_accepted", 20, 0, 200),
        ("failed_jobs", 0, 2, 0),
    ],
)
def test_every_target_turns_red_with_its_name_when_missed(key, limit, bad, good):
    [trace, v] = window_verdicts("w1", "proxy_hits", 5, {key: limit}, {key: bad})
    assert trace.ok and not v.ok and v.slo == f"w1: {key}" and v.measured == bad
    assert v.target == (f">= {limit}" if key.startswith("min_") else f"<= {limit}")
    assert window_verdicts("w1", "proxy_hits", 5, {key: limit}, {key: good})[1].ok


def test_a_figure_never_measured_fails_its_target_and_no_trace_fails_the_window():
    [trace, v] = window_verdicts("w1", "openai_faulted", 0, {"recover_s": 30}, {"recover_s": None})
    assert not v.ok and v.measured is None
    assert not trace.ok and trace.slo == "w1: the fault reached the system (openai_faulted)"


def test_a_windows_failures_are_judged_against_its_budget_and_named():
    sc = scenario.parse(
        {
            "window": [
                {"name": "ls", "fault": "worker.kill", "duration_s": 2, "expect_failures": {"input_lost": 2}},
                {"name": "k", "fault": "worker.pause", "duration_s": 3},
            ],
        }
    )
    ls, k = sc.windows
    assert ls.expect_failures == {"input_lost": 2} and k.expect_failures == {}
    assert sc.failure_budget() == {"input_lost": 2}

    def job(i, enq, done, status="completed", code=None):
        return {"id": f"j{i}", "enq": enq, "done": done, "status": status, "error_code": code}

    run = [
        job(1, 9.5, 10.5, "failed", "input_lost"),  # accepted before the fault, failed in it: the fault's
        job(2, 11, 12, "failed", "input_lost"),
        job(3, 11, 12),
        job(4, 30, 31, "failed", "x"),
        job(5, 2, 3, "failed", "y"),  # failed before the window began: not the window's
    ]
    within = failure_budget_verdict(ls, run, 10, 20)
    assert within.ok and within.measured == 0 and "(input_lost 2)" in within.slo
    over = failure_budget_verdict(k, run, 10, 40)  # no budget: every failed job in it counts, named
    assert not over.ok and over.measured == 3 and "input_lost: j1, j2" in over.slo and "x: j4" in over.slo


def test_a_load_generator_that_died_or_stopped_early_fails_the_run():
    import subprocess

    def run(code):
        return subprocess.CompletedProcess(["locust"], code, "", "")

    answered = [{"t": 100.0}, {"t": 158.0}]
    fine = generator_verdicts(run(1), answered, load_end=160.0)
    assert [v.ok for v in fine] == [True, True] and fine[1].measured == 2.0
    aborted = generator_verdicts(run(-6), [{"t": 100.0}, {"t": 124.0}], load_end=160.0)
    assert [v.ok for v in aborted] == [False, False]
    assert aborted[0].measured == -6 and "exit -6" in aborted[0].line() and "invalid" in aborted[0].line()
    assert aborted[1].measured == 36.0 and "stopped early" in aborted[1].line()
    never = generator_verdicts(None, [], load_end=160.0)  # Locust never finished, nothing was answered
    assert [(v.ok, v.measured) for v in never] == [(False, None), (False, None)]


def test_a_scenario_may_name_its_transport_and_a_wrong_one_is_refused_with_the_choices():
    window = [{"name": "w", "fault": "worker.kill", "params": {"worker": 0}, "duration_s": 5}]
    assert scenario.parse({"run": {"transport": "seeds"}, "window": window}).transport == "seeds"
    assert scenario.parse({"window": window}).transport is None  # the run's own choice
    with pytest.raises(scenario.ScenarioError, match=r"transport: 'rabbitmq' is not one of celery, seeds, sqs"):
        scenario.parse({"run": {"transport": "rabbitmq"}, "window": window})


def test_a_recovery_phase_too_short_to_show_its_target_is_refused_with_the_room_it_needs(tmp_path):
    """A recovery is seen in the arrivals of a 5 s slice that starts then: a phase no longer than its recover_s target
    could never show a recovery near the target, and its window would fail for want of room, not of recovery."""
    doc = """
[defaults.targets]
recover_s = 10
[[window]]
name = "w"
fault = "worker.kill"
params = { worker = 0 }
duration_s = 5
recovery_s = %s
"""
    short = tmp_path / "short.toml"
    short.write_text(doc % 12)
    with pytest.raises(scenario.ScenarioError, match=r"window w: recovery_s = 12 .* recover_s target \(10 s\).*>= 15"):
        scenario.load(str(short))
    roomy = tmp_path / "roomy.toml"
    roomy.write_text(doc % 15)
    assert scenario.load(str(roomy)).windows[0].recovery_s == 15
