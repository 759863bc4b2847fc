"""The open workload model's shapes and tally (harness.drivers.arrivals), and the verdicts built on it and on a
scenario's steady state and abort targets (harness.oracles.windows): each seen to pass and to fail."""

from __future__ import annotations

import json
import math
import re
from itertools import islice, takewhile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.drivers import arrivals
from harness.oracles.slo import Verdict
from harness.oracles.windows import (
    BreachWatch,
    abort_verdict,
    arrival_verdict,
    resilience_score,
    steady_state_verdicts,
)
from harness.programs import scenario


def test_a_constant_rate_is_due_evenly_and_never_waits_for_answers():
    shape = arrivals.parse("constant:10")
    assert [round(t, 6) for t in islice(shape.offsets(), 5)] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert shape.expected(0, 60) == pytest.approx(600)
    assert shape.rate(1000) == 10


@pytest.mark.parametrize(
    "text, table",
    [
        ("ramp:5:40:60", {"shape": "ramp", "from": 5, "to": 40, "over_s": 60}),
        ("step:5,10,20:30", {"shape": "step", "rates": [5, 10, 20], "step_s": 30}),
        ("spike:10:60:20:5", {"shape": "spike", "base": 10, "peak": 60, "at_s": 20, "spike_s": 5}),
        ("12", {"shape": "constant", "rate": 12}),
    ],
)
def test_the_string_and_the_toml_forms_are_the_same_shape(text, table):
    a, b = arrivals.parse(text), arrivals.parse(table)
    assert str(a) == str(b)
    assert [round(x, 9) for x in islice(a.offsets(), 200)] == [round(x, 9) for x in islice(b.offsets(), 200)]
    assert arrivals.parse(a.as_json()).stages == a.stages  # what Locust receives is what was asked


def test_shapes_rise_step_and_spike_where_they_say():
    ramp = arrivals.parse("ramp:0:10:10")
    assert ramp.rate(5) == pytest.approx(5) and ramp.rate(30) == 10 and ramp.expected(0, 10) == pytest.approx(50)
    step = arrivals.parse("step:1,4:2")
    assert step.rate(1) == 1 and step.rate(3) == 4 and step.expected(0, 4) == pytest.approx(2 + 8)
    spike = arrivals.parse("spike:1:10:2:1")
    assert [spike.rate(t) for t in (1, 2.5, 4)] == [1, 10, 1]


@given(
    st.sampled_from(["constant:7", "ramp:1:30:20", "step:2,9,4:5", "spike:3:25:4:3", "ramp:20:2:10"]),
    st.floats(1, 40),
)
def test_the_arrivals_due_by_any_time_are_the_shapes_integral(text, t):
    shape = arrivals.parse(text)
    due = sum(1 for _ in takewhile(lambda x: x <= t, shape.offsets()))
    assert abs(due - shape.expected(0, t)) <= 1  # the n-th is due when the integral reaches n
    offs = list(takewhile(lambda x: x <= t, shape.offsets()))
    assert offs == sorted(offs)


@pytest.mark.parametrize(
    "bad, says",
    [
        ("wobble:3", "unknown arrival shape 'wobble'"),
        ("ramp:1:2", "ramp takes from:to:over_s"),
        ("constant:x", "takes numbers"),
        ("constant:0", "the last one > 0"),
        ({"shape": "ramp", "to": 3}, "over_s"),
    ],
)
def test_a_wrong_shape_says_what_is_expected(bad, says):
    with pytest.raises(arrivals.ShapeError, match=says):
        arrivals.parse(bad)


def test_the_arrival_mix_is_parsed_and_a_wrong_one_says_what_is_expected():
    assert arrivals.parse_mix("inference:16,score:1") == {"inference": 16.0, "score": 1.0}
    assert arrivals.parse_mix(" inference:1 ") == {"inference": 1.0}
    for bad, says in [
        ("inference", "is not kind:weight"),
        ("inference:x", "is not kind:weight"),
        ("video:1", "unknown kind(s) ['video']"),
        ("inference:0,score:0", "add up to more than 0"),
        ("", "add up to more than 0"),
    ]:
        with pytest.raises(arrivals.ShapeError, match=re.escape(says)):
            arrivals.parse_mix(bad)
    # what a mix may name is what Locust can submit: read from the locustfile's source, never imported here (importing
    # Locust monkey-patches this whole test process with gevent, and every later test's TLS then recurses)
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).parents[2] / "locustfile.py").read_text())
    [submissions] = [
        n.value for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "SUBMISSIONS"
    ]
    assert isinstance(submissions, ast.Dict)
    assert {k.value for k in submissions.keys if isinstance(k, ast.Constant)} == set(arrivals.MIX_KINDS)


def test_the_tally_counts_late_and_missed_arrivals_and_the_shortfall_sees_them(tmp_path):
    log = tmp_path / "arrivals.jsonl"
    tally = arrivals.Tally(log)
    shape = arrivals.parse("constant:10")
    start = 1000.4  # the first second's records are the generator's too, though their whole second starts before
    tally.begin(start, shape)
    for i, due in enumerate(islice(shape.offsets(), 95)):  # 10 s asked (100 arrivals), 5 of them never due yet
        at = start + due
        if i % 10 == 0:
            tally.missed(at)  # 10 never sent: too many in flight
        elif i % 10 == 1:
            tally.sent(at, lag_s=arrivals.LATE_S + 0.5)  # 10 sent late
        else:
            tally.sent(at, lag_s=0.01)
            tally.answered(at + 0.2)
    tally.close()
    t0, end, got, seconds = arrivals.read_log(log)
    assert t0 == start and str(got) == "constant:10" and end is not None
    sf = arrivals.shortfall(seconds, got, start, start + 10)
    assert (sf["asked"], sf["sent"], sf["late"], sf["missed"]) == (100, 85, 10, 10)
    assert sf["shortfall"] == pytest.approx(0.25)  # 75 of 100 on time
    bad = arrival_verdict(sf)
    assert not bad.ok and "10 late, 10 missed: the run is invalid" in bad.line()
    honest = {"asked": 100.0, "sent": 100, "late": 0, "missed": 0, "shortfall": 0.0}
    assert arrival_verdict(honest).ok and not arrival_verdict(None).ok
    asked = {r["t"]: r["asked"] for r in arrivals.rollup(seconds, got, start)}
    assert asked[1000] == pytest.approx(6) and asked[1005] == pytest.approx(10)  # the first second began at .4
    assert sum(r["answered"] for r in seconds) == 75


def test_the_steady_state_names_an_unhealthy_system_before_any_fault():
    targets = {"api_p95_ms": 500, "server_errors": 0, "min_completed_per_s": 5}
    ok = steady_state_verdicts(
        "before faults", targets, {"api_p95_ms": 80, "server_errors": 0, "min_completed_per_s": 9}
    )
    assert all(v.ok for v in ok)
    bad = steady_state_verdicts("before faults", targets, {"api_p95_ms": 900, "server_errors": 0})
    lines = {v.slo.split(":")[1].split()[0]: v for v in bad}
    assert not lines["api_p95_ms"].ok and "unhealthy before faults" in lines["api_p95_ms"].line()
    assert not lines["min_completed_per_s"].ok and lines["min_completed_per_s"].measured is None  # unmeasured fails
    after = steady_state_verdicts("after recovery", {"server_errors": 0}, {"server_errors": 3})
    assert "unhealthy after recovery" in after[0].line()


def test_a_breach_aborts_only_once_it_has_held_for_its_hold_time():
    watch = BreachWatch({"api_p95_ms": 300, "min_completed_per_s": 1}, hold_s=5)
    assert watch.observe(0, {"api_p95_ms": 900}) is None
    assert watch.observe(3, {"api_p95_ms": 100}) is None  # recovered: the clock restarts
    for t in range(4, 9):
        assert watch.observe(t, {"api_p95_ms": 900, "min_completed_per_s": None}) is None
    breach = watch.observe(9, {"api_p95_ms": 950})
    assert breach == {"target": "api_p95_ms", "limit": 300, "since": 4, "at": 9, "measured": 950}
    v = abort_verdict(breach, 5, t0=-10)
    assert not v.ok and "api_p95_ms breached from 14.0 s" in v.line() and "stopped at 19.0 s" in v.line()
    assert abort_verdict(None, 5, 0).ok


def _v(name: str, ok: bool) -> Verdict:
    return Verdict(name, "x", 1.0, ok)


def test_the_resilience_score_weighs_what_a_failure_costs_and_refuses_an_invalid_run():
    good = [
        _v("load generator: Locust exited on its own (0, or 1 with failed requests)", True),
        _v("redis_restart: the fault reached the system (service_trouble)", True),
        _v("redis_restart: recover_s", True),
        _v("redis_restart: api_p95_ms", True),
        _v("ledger: problems", True),
        _v("two judges agree", False),  # about the judges: no weight
    ]
    assert resilience_score(good)["score"] == 100.0
    slow = [*good[:2], _v("redis_restart: recover_s", False), *good[3:]]
    res = resilience_score(slow)
    assert res["score"] == pytest.approx(100 * (3 + 1 + 10 - 3) / (3 + 1 + 10), abs=0.1)
    assert res["lost"] == [{"verdict": "redis_restart: recover_s", "weight": 3}]
    lost_job = [*good[:4], _v("ledger: problems", False)]
    assert resilience_score(lost_job)["score"] < res["score"]  # a lost job costs more than a slow recovery
    no_trace = [good[0], _v("redis_restart: the fault reached the system (service_trouble)", False), *good[2:]]
    assert resilience_score(no_trace)["score"] is None and resilience_score(no_trace)["invalid"]


def test_a_scenario_states_its_arrival_rate_steady_state_and_abort(tmp_path):
    doc = {
        "run": {"arrival": {"shape": "ramp", "from": 2, "to": 8, "over_s": 10}, "steady_s": 10, "warmup_s": 5},
        "steady_state": {"api_p95_ms": 800, "server_errors": 0},
        "abort": {"hold_s": 20, "targets": {"done_p95_ms": 30000}},
        "window": [{"name": "w", "fault": "worker.kill", "params": {"worker": 0}, "duration_s": 5, "recovery_s": 5}],
    }
    sc = scenario.parse(doc)
    assert sc.arrival == "ramp:2:8:10" and sc.steady_state == {"api_p95_ms": 800, "server_errors": 0}
    assert sc.abort == {"hold_s": 20, "targets": {"done_p95_ms": 30000}}
    assert sc.load_s == 5 + 10 + 10 + 10  # the steady state is checked again after the last recovery
    for bad, says in (
        ({**doc, "steady_state": {"p95": 1}}, "steady_state"),
        ({**doc, "run": {"arrival": "ramp:1"}}, "arrival"),
        ({**doc, "abort": {"targets": {"nope": 1}}}, "abort.targets"),
    ):
        with pytest.raises(scenario.ScenarioError, match=says):
            scenario.parse(bad)
    assert json.loads(arrivals.parse(sc.arrival).as_json())["text"] == sc.arrival
    assert math.isinf(arrivals.parse(sc.arrival).stages[-1].seconds)


def test_a_window_that_got_less_load_than_asked_is_named():
    from harness.oracles.windows import offered_load_verdict, window_offered

    history = [{"t": t, "users": 20 if t < 105 else 12} for t in range(100, 110)]
    assert window_offered((100, 105), 20, history, None) is None
    assert window_offered((103, 108), 20, history, None) == "12 Locust users of 20"
    assert window_offered((200, 205), 20, history, None) == "no Locust statistics for it"
    series = [{"t": t, "asked": 10.0, "sent": 10 if t < 104 else 4, "late": 0} for t in range(100, 110)]
    open_model = {"series": series}
    assert window_offered((100, 105), 1, [], open_model) is None
    assert window_offered((104, 110), 1, [], open_model) == "20 arrivals sent on time of 50 asked"
    v = offered_load_verdict({"redis_restart": "12 Locust users of 20"})
    assert not v.ok and "redis_restart: 12 Locust users of 20: the run is invalid" in v.line()
    assert offered_load_verdict({}).ok


def test_the_system_reads_the_wall_clock_one_way():
    """The clock-skew fault (harness/faults/clock.py) moves ``time.time``: a wall-clock read through ``datetime`` in
    ``system/`` would escape it, and the fault would prove nothing about that code."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "system"
    pattern = re.compile(r"\b(datetime|date)\.(now|utcnow|today)\(")
    found = [
        f"{p.relative_to(root.parent)}:{n}"
        for p in root.rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, f"read the wall clock through system.pipelines.base.wall_clock (time.time): {found}"


def test_a_skewed_process_reads_its_wall_clock_off_and_its_monotonic_clock_true():
    import os
    import subprocess
    import sys

    from harness.faults.clock import skewed_env

    probe = "import time; t = time.monotonic(); time.sleep(0.1); print(time.time(), time.monotonic() - t)"
    env = {**os.environ, **skewed_env(-300, os.environ.get("PYTHONPATH"))}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    import time

    wall, slept = (float(x) for x in out.split())
    assert wall - time.time() == pytest.approx(-300, abs=5) and 0.09 <= slept < 1.0


def test_a_clock_measurement_with_a_slow_round_trip_is_dropped():
    """A worker's clock against Postgres's: a round trip slower than SYNC_MAX_RTT_S (a busy worker, a stalled
    database) says nothing about the skew, and a skew under SKEW_MIN_S is not corrected."""
    import contextlib
    import time
    from datetime import timedelta

    from system.storage import jobs as store_module

    class Pool:
        def __init__(self, lag: float, offset: float):
            self.lag, self.offset = lag, offset

        @contextlib.contextmanager
        def connection(self):
            pool = self

            class Conn:
                def execute(self, *_):
                    t = time.time() + pool.offset
                    time.sleep(pool.lag)
                    return type("R", (), {"fetchone": lambda _self: {"t": t}})()

            yield Conn()

    store = store_module.JobStore(Pool(0.0, 300.0), {})
    assert store.sync_clock() == pytest.approx(300, abs=0.1)
    store.pool = Pool(store_module.SYNC_MAX_RTT_S + 0.1, -50.0)  # slow: dropped, the last skew stays
    assert store.sync_clock() == pytest.approx(300, abs=0.1)
    store.pool = Pool(0.0, 0.2)  # within what a round trip can tell: no correction
    assert store.sync_clock() == 0.0 and store.skew == timedelta(0)
