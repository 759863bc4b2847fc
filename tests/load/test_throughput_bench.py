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


CELERY_ROUNDS = 2  # each transport's, alternated: S C S C
CELERY_BATCHES = 200  # x5 series = 1 000 jobs per round


def test_celery_drains_at_least_as_fast_as_sqs(benchmark, system_factory, stack):
    """The seeds' two queues side by side, same run, same load: 1 000 inference jobs from 8 client threads into a
    system on SQS and into one on Celery (2 worker processes × 4 each), the rounds alternated so the machine's drift
    falls on both; gated on Celery's jobs/s over SQS's (the medians of their rounds), slo.toml [bench]
    ``celery_over_sqs_min``. A Celery worker back to one job per task and commit reads far under it."""
    systems = {}
    for transport in ("sqs", "celery"):
        systems[transport] = system_factory(transport=transport)
        systems[transport].start(2, concurrency=4)
    warm_sqs(stack.aws)
    rates: dict[str, list[float]] = {"sqs": [], "celery": []}

    def alternate():
        for r in range(CELERY_ROUNDS):
            for transport, sut in systems.items():
                _, fig = submit_and_wait(
                    sut.api_url,
                    stack,
                    [inference_batch(PATTERNS, seed=50_000 + 1000 * r + i) for i in range(CELERY_BATCHES)],
                    f"{transport} round {r + 1}",
                    concurrency=CLIENT_THREADS,
                )
                assert fig["terminal"] == fig["jobs"] == CELERY_BATCHES * 5
                rates[transport].append(fig["jobs_per_s"])

    benchmark.pedantic(alternate, rounds=1, iterations=1, warmup_rounds=0)
    ratio = statistics.median(rates["celery"]) / statistics.median(rates["sqs"])
    history.append("celery_vs_sqs", {**rates, "celery_over_sqs": round(ratio, 4)})
    benchmark.extra_info.update(jobs_per_s=rates, celery_over_sqs=round(ratio, 4))
    print(f"\njobs/s per round: SQS {rates['sqs']}, Celery {rates['celery']} (Celery / SQS {ratio:.2f})")
    verdict = slo.celery_verdict(ratio)
    assert verdict.ok, verdict.line()
