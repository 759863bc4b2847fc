"""Throughput benchmark (``nox -s bench``, and the CI's ratio benchmarks): 2 000 inference jobs per round from
8 client threads (as ``nox -s capacity`` submits, whose headroom phase checks that the client is not the limit), timed
until the real workers drained them, next to the raw SQS ceiling measured in the same run, gated on
their ratio (slo.toml [bench] ``drain_share_of_sqs_ceiling_min``). Each run is appended to
reports/bench-history.jsonl; ``nox -s bench`` also compares the saved JSON with the previous run's."""

from __future__ import annotations

import statistics

import pytest

from harness.drivers.throughput import inference_batch, sqs_ceiling, submit_and_wait, warm_sqs
from harness.oracles import slo
from harness.reports import history
from system.patterns import PATTERNS

pytestmark = [pytest.mark.bench, pytest.mark.load, pytest.mark.timing]
BATCHES = 400  # x5 series = 2 000 jobs per round
CLIENT_THREADS = 8


def test_drain_2000_inference_jobs(benchmark, system, stack):
    """Each round: the raw SQS ceiling (one timed round of 1 000 messages), then 2 000 jobs drained; the gate takes the
    median of the rounds' ratios, each to the ceiling measured just before it (the emulator's speed drifts within a
    session: paired, the drift cancels)."""
    warm_sqs(stack.aws)
    rounds: list[dict] = []

    def drain():
        ceiling = sqs_ceiling(stack.aws, 1000, warm_up=0, rounds=1)["send_receive_delete_per_s"]
        _, fig = submit_and_wait(
            system.api_url,
            stack,
            [inference_batch(PATTERNS, seed=1000 * len(rounds) + i) for i in range(BATCHES)],
            "bench",
            concurrency=CLIENT_THREADS,
        )
        rounds.append({**fig, "ceiling": ceiling, "share": fig["jobs_per_s"] / ceiling})
        return fig

    fig = benchmark.pedantic(drain, rounds=3, iterations=1, warmup_rounds=0)
    assert all(r["terminal"] == r["jobs"] == BATCHES * 5 for r in rounds)
    share = statistics.median(r["share"] for r in rounds)
    best = max(r["jobs_per_s"] for r in rounds)
    benchmark.extra_info.update(
        jobs_per_s=best,
        sqs_ceiling_msgs_per_s=[r["ceiling"] for r in rounds],
        share_of_ceiling=round(share, 4),
        enqueue_to_done_p95_ms=fig["enqueue_to_done_ms_p95"],
        workers=len(system.workers),
    )
    history.append(
        "throughput",
        {
            "jobs_per_s": [r["jobs_per_s"] for r in rounds],
            "best_jobs_per_s": best,
            "sqs_ceiling_msgs_per_s": [r["ceiling"] for r in rounds],
            "shares": [round(r["share"], 5) for r in rounds],
            "share_of_ceiling": round(share, 5),
            "workers": len(system.workers),
        },
    )
    print(
        f"\n{best} jobs/s with {len(system.workers)} workers; per round, jobs/s / raw SQS ceiling: "
        + ", ".join(f"{r['jobs_per_s']}/{r['ceiling']}" for r in rounds)
        + f" (median share {share:.1%})"
    )
    verdict = slo.drain_verdict(share)  # a ratio of this run's figures, never a bare jobs/s
    assert verdict.ok, verdict.line()
