"""The per-job budget check's teeth: a worker that reads score files in its own thread (no budget) must turn
``budget_problems`` red, naming what went wrong."""

from __future__ import annotations

from harness.drivers.hostile import budget_problems, deal_with, dense_score


def test_a_worker_without_job_budgets_is_caught(chaos_system, stack):
    sut = chaos_system(workers=1, sabotage="no_job_budget", SCORE_JOB_TIMEOUT_SECONDS="0.5")
    out = deal_with(sut, stack.postgres.dsn, "dense.musicxml", dense_score(), timeout=60)
    problems = budget_problems(out, "time_budget_exceeded")
    assert out.job["status"] in ("completed", "completed_with_warnings"), out.figures()  # the defect took effect
    assert problems[0] == (f"the job ended {out.job['status']!r} (None), not failed with time_budget_exceeded"), (
        problems
    )
