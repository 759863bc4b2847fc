"""The queue, backlog and delivery SLOs' teeth: workers that fail, slow down or fall behind an arrival rate, under a
short real load (Locust as a subprocess), and the shipped ``slo.toml`` must turn the matching verdicts red. Each test
asserts red only (red_verdicts: a busy neighbour can only make them redder). A module of its own beside
test_slo_sabotage.py: its tests wait out long backlogs, and CI's parallel step hands out files, not tests.

Select one with ``-k``: ``failing_worker``, ``open_model``.
"""

from __future__ import annotations

import pytest

from harness.oracles import slo
from harness.programs import load
from harness.reports import report
from tests.sabotage.short_load import SECONDS, short_load


# every verdict it asserts is red, and a busy neighbour can only make those redder: its stray DLQ message lands while the
# queue is still sampled (the drain of the slowed worker's backlog lasts tens of seconds)
@pytest.mark.red_verdicts
def test_a_slow_failing_worker_fails_the_queue_backlog_and_delivery_slos(chaos_system, stack):
    """Short Locust load on workers whose first attempt at each job fails (retried), whose second takes 1 s and then
    fails the job "with a reason", and a stray message in the DLQ: every queue, backlog and delivery SLO of the
    shipped file turns red, each with its figure."""
    import threading

    from harness.sabotage import plant_in_stores

    # one worker of concurrency 2: every attempt sleeps 1 s per job, so it finishes at most one job a second
    sut = chaos_system(workers=1, concurrency=2, sabotage="invented_failure,slow_worker,flaky_first_attempt")
    stray: list[str] = []

    def plant_stray() -> None:  # once the first jobs have ended
        import time

        import psycopg

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not stray:
            with psycopg.connect(stack.postgres.dsn) as conn:
                ids = [
                    str(r[0])
                    for r in conn.execute(
                        "SELECT id FROM jobs WHERE queue = %s AND status = 'failed' LIMIT 1", (sut.queue_name,)
                    )
                ]
            if ids:
                stray.extend(plant_in_stores("dlq_stray", stack, ids, sut.queue_name))
            time.sleep(0.5)

    planter = threading.Thread(target=plant_stray, daemon=True)
    planter.start()
    # one user offers 2-3 jobs/s against that one a second: the backlog when the load stops is at least ~12 jobs, so
    # the drain takes >= 12 s (a worker of concurrency 4 can finish two a second, and once drained in 4.1 s, under the
    # 5 s target)
    figures = short_load(stack, sut, 1)
    planter.join(5)
    assert stray, "no failed job to send to the DLQ"
    got = {v.slo: v for v in slo.evaluate(slo.load(), figures)}
    red = [
        "queue inference enqueue->start p95 ms",
        "queue inference enqueue->done p95 ms",
        "backlog drain s",
        "failed jobs",
        "ledger and content problems (client journal)",
        "DLQ messages",
        "redelivered jobs",
    ]
    print("\n" + "\n".join(got[n].line() for n in red))
    for name in red:
        assert not got[name].ok and "FAIL" in got[name].line(), got[name].line()
    assert figures["failed_jobs"] == figures["jobs"] == figures["redelivered_jobs"] > 0
    assert figures["ledger"]["problem_count"] >= figures["jobs"]  # each failure outside the budget, named


@pytest.mark.red_verdicts
def test_an_open_model_above_capacity_shows_the_growing_backlog(chaos_system, stack):
    """Submissions offered as an arrival rate (the open model) to a worker slowed below it: the generator keeps its
    rate (its own verdict passes) and the backlog grows by the difference, which the backlog-growth SLO names."""
    sut = chaos_system(workers=1, sabotage="slow_worker")
    figures = load.measure(
        stack,
        sut.api_url,
        sut.queue_name,
        sut.dlq_name,
        1,  # the OpenArrivals user alone: ~3 submissions/s, ~9 jobs/s against a worker that does ~4
        SECONDS,
        report.new_run_dir(),
        user_classes=["OpenArrivals"],
        burst_requests=0,
        reset_stats=False,
        arrival="constant:3",
        arrival_mix="inference:1",
        ceilings=(),
    )
    from harness.oracles.windows import arrival_verdict

    offered = arrival_verdict(figures["arrivals"])
    assert offered.ok, offered.line()  # the load was offered as asked: the red below is the system's
    assert figures["arrivals"]["sent"] >= 3 * SECONDS * 0.9
    growth = {v.slo: v for v in slo.evaluate(slo.load(), figures)}["backlog growth jobs/s"]
    print("\n" + offered.line() + "\n" + growth.line())
    assert not growth.ok and growth.measured > 1.0, growth.line()
