"""A chaos-load window's recovery phase ends as soon as the window's time to recover can be seen (the verdict's own
``time_to_recover`` over the jobs so far), and lasts its whole ``recovery_s`` when it cannot: the next fault never
begins on a system not yet seen to be back, and one that is back does not idle out the timer."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from harness.programs import scenario as scenarios
from harness.programs.chaos_load import ChaosLoad, Phase


def _chaos(jobs: list[dict], fault_end: float) -> ChaosLoad:
    chaos = ChaosLoad.__new__(ChaosLoad)  # no stack, no system: the phase logic over the jobs given
    chaos.scenario = scenarios.load("ci")
    chaos.stopped = threading.Event()
    chaos.cpu = []  # no CPU timeline: the run never started its sampler
    steady = fault_end - 20
    chaos.phases = [
        Phase("warmup", "warmup", steady - 5, steady),
        Phase("steady", "steady", steady, steady + 10),
        Phase("w", "fault", steady + 10, fault_end, "w"),
    ]
    chaos._jobs = lambda since=None: [j for j in jobs if since is None or j["enq"] >= since]  # type: ignore[method-assign]
    return chaos


def _jobs(start: float, end: float, took_s: float, open_after: float | None = None) -> list[dict]:
    out, t = [], start
    while t < end:
        done = None if open_after is not None and t >= open_after else t + took_s
        out.append({"id": f"j{t:.1f}", "kind": "inference", "status": "completed", "enq": t, "done": done})
        t += 0.2
    return out


def test_the_recovery_phase_ends_once_the_window_is_seen_back_to_steady():
    fault_end = time.time() - 7  # a 5 s slice after the fault, and the second left out, are behind us
    jobs = _jobs(fault_end - 20, fault_end - 10, 0.05) + _jobs(fault_end - 10, time.time(), 0.06)
    chaos = _chaos(jobs, fault_end)
    w = replace(chaos.scenario.windows[0], name="w", recovery_s=30)
    began = time.monotonic()
    chaos._recovery(w, fault_end)
    assert time.monotonic() - began < 3, "a recovered window waited out its recovery_s"
    assert chaos.phases[-1].kind == "recovery" and chaos.phases[-1].end - fault_end < 10


def test_the_recovery_phase_lasts_its_recovery_s_while_the_backlog_is_open():
    fault_end = time.time() - 7
    # jobs accepted since the fault ended are still open: not recovered, whatever the slices say
    jobs = _jobs(fault_end - 20, fault_end - 10, 0.05) + _jobs(fault_end - 10, time.time(), 0.06, open_after=fault_end)
    chaos = _chaos(jobs, fault_end)
    w = replace(chaos.scenario.windows[0], name="w", recovery_s=9)
    chaos._recovery(w, fault_end)
    assert chaos.phases[-1].end >= fault_end + 9 - 0.05, "the phase ended before the window was seen to recover"


def test_the_recovery_phase_lasts_its_recovery_s_while_jobs_take_longer_than_steady():
    fault_end = time.time() - 7
    jobs = _jobs(fault_end - 20, fault_end - 10, 0.05) + _jobs(fault_end - 10, time.time(), 0.5)  # 10x steady
    chaos = _chaos(jobs, fault_end)
    w = replace(chaos.scenario.windows[0], name="w", recovery_s=9)
    chaos._recovery(w, fault_end)
    assert chaos.phases[-1].end >= fault_end + 9 - 0.05


def test_a_postgres_that_cannot_be_read_is_not_recovered_and_does_not_end_the_run():
    """CI: the disk-full window's Postgres refused connections during its recovery phase; the check must read that
    as not recovered yet, not raise out of the timeline."""
    import psycopg

    fault_end = time.time() - 7
    chaos = _chaos([], fault_end)

    def refused(since=None):
        raise psycopg.OperationalError("connection refused")

    chaos._jobs = refused  # type: ignore[method-assign]
    w = replace(chaos.scenario.windows[0], name="w", recovery_s=8)
    chaos._recovery(w, fault_end)
    assert chaos.phases[-1].end >= fault_end + 8 - 0.05
