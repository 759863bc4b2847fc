"""Throughput benchmark (``nox -s bench``, and the CI's ratio benchmarks): 2 000 inference jobs per round from
4 client threads (the submitting side is not what limits it: ``nox -s capacity`` shows twice the threads give no more
jobs/s), timed until the real workers drained them, next to the raw SQS ceiling measured in the same run, gated on
their ratio (slo.toml [throughput]). Each run is appended to
reports/bench-history.jsonl; ``nox -s bench`` also compares the saved JSON with the previous run's."""

from __future__ import annotations

import pytest

from harness import history, slo
from harness.throughput import inference_batch, sqs_ceiling, submit_and_wait
from system.simulators.patterns import PATTERNS

pytestmark = [pytest.mark.bench, pytest.mark.load, pytest.mark.timing]
BATCHES = 400  # x5 series = 2 000 jobs per round
CLIENT_THREADS = 4


def test_drain_2000_inference_jobs(benchmark, system, stack):
    ceiling = sqs_ceiling(stack.aws, 1000)
    rounds: list[dict] = []

    def drain():
        _, fig = submit_and_wait(
            system.api_url,
            stack,
            [inference_batch(PATTERNS, seed=1000 * len(rounds) + i) for i in range(BATCHES)],
            "bench",
            concurrency=CLIENT_THREADS,
        )
        rounds.append(fig)
        return fig

    fig = benchmark.pedantic(drain, rounds=3, iterations=1, warmup_rounds=0)
    assert fig["terminal"] == fig["jobs"] == BATCHES * 5
    best = max(r["jobs_per_s"] for r in rounds)
    share = best / ceiling["send_receive_delete_per_s"]
    benchmark.extra_info.update(
        jobs_per_s=best,
        sqs_ceiling_msgs_per_s=ceiling["send_receive_delete_per_s"],
        share_of_ceiling=round(share, 4),
        enqueue_to_done_p95_ms=fig["enqueue_to_done_ms_p95"],
        workers=len(system.workers),
    )
    history.append(
        "throughput",
        {
            "jobs_per_s": [r["jobs_per_s"] for r in rounds],
            "best_jobs_per_s": best,
            "sqs_ceiling_msgs_per_s": ceiling["send_receive_delete_per_s"],
            "share_of_ceiling": round(share, 5),
            "workers": len(system.workers),
        },
    )
    print(
        f"\n{best} jobs/s with {len(system.workers)} workers; raw SQS ceiling "
        f"{ceiling['send_receive_delete_per_s']} msg/s ({share:.1%})"
    )
    # the same gate as the load runs' capacity SLO: a ratio of this run's figures, never a bare jobs/s
    [verdict] = slo.evaluate(slo.section(slo.load(), "throughput"), {"capacity": {"share_of_ceiling": share}})
    assert verdict.ok, verdict.line()
