"""The main job (``python3 dev.py demo`` / ``nox -s demo``): everything up on the local stack, a bounded mixed
load with live progress, then a summary of what completed, what failed and how fast — and proof nothing was lost.

Phases: the raw SQS ceiling of the emulator; trivial inference jobs through the API with 1 worker, then 2; the same
jobs on the Celery transport (2 Celery workers, against the raw Redis LPUSH/BRPOP ceiling); a mixed load (score
uploads + the five patterns) with faults switched on in the mock OpenAI service; the ledger over every job.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.drivers.cpu import CpuMeter, system_meter
from harness.drivers.cpu import table as cpu_table
from harness.drivers.system_under_test import SystemUnderTest
from harness.drivers.throughput import (
    dumps,
    inference_batch,
    redis_ceiling,
    score_upload,
    sqs_ceiling,
    submit_and_wait,
)
from harness.faults import MockOpenAIControl
from harness.oracles import ledger
from harness.oracles.journal import Journal
from harness.reports.report import REPORTS
from harness.stack import choose_provider
from harness.stack.choice import CHOICES
from system.patterns import PATTERNS
from system.simulators import scores

MUSICXML = scores.musicxml()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness.programs.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--stack",
        default="local",
        choices=CHOICES,
        help="where the backing services run (default: local, the embedded default)",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=2000,
        help="inference jobs per SQS worker-count phase and for the Celery phase (2000: long enough for jobs/s and "
        "CPU per job to mean something); the mixed phase sends up to 300",
    )
    ap.add_argument("--clients", type=int, default=8, help="client threads submitting in those phases (8)")
    ap.add_argument("--scores", type=int, default=20, help="score uploads in the mixed phase (20)")
    ap.add_argument(
        "--error-rate",
        type=float,
        default=0.1,
        help="share of mock OpenAI answers that are HTTP 500 in the mixed phase (0.1)",
    )
    ap.add_argument(
        "--report-dir",
        default=str(REPORTS),
        help="where the JSON summary goes (default: VERISIM_REPORTS_DIR, else reports/)",
    )
    return ap


def say(message: str) -> None:
    print(message, flush=True)


def _phase_line(fig: dict) -> str:
    return (
        f"  {fig['jobs_per_s']} jobs/s; queue wait p50 {fig['queue_wait_ms_p50']} ms, "
        f"p95 {fig['queue_wait_ms_p95']} ms; enqueue→done p95 {fig['enqueue_to_done_ms_p95']} ms"
    )


def _sqs_ceiling(stack, summary: dict) -> None:
    say("\n[1/5] raw SQS ceiling (send batch + receive + delete, the best of 3 rounds of 1000 messages)")
    summary["sqs_ceiling"] = c = sqs_ceiling(stack.aws, 1000)
    say(
        f"  {c['send_receive_delete_per_s']} msg/s end to end (rounds {c['round_per_s']}; best round: send "
        f"{c['send_per_s']}/s, receive+delete {c['receive_delete_per_s']}/s)"
    )


def _sqs_phases(sut: SystemUnderTest, meter, args, batches: int, summary: dict, journal: Journal) -> None:
    """Trivial inference jobs through the API with 1 SQS worker, then 2 (CPU per job by process where measured)."""
    sut.start_worker(concurrency=4)
    for workers in (1, 2):
        if workers == 2:
            sut.start_worker(concurrency=4)
        say(
            f"\n[{workers + 1}/5] {batches * 5} trivial inference jobs from {args.clients} client threads, "
            f"{workers} worker(s) × 4 concurrent"
        )
        before = meter.read() if meter else None
        ids, fig = submit_and_wait(
            sut.api_url,
            sut.stack,
            [inference_batch(PATTERNS, seed=10_000 * workers + i) for i in range(batches)],
            f"{workers} worker(s)",
            concurrency=args.clients,
            journal=journal,
        )
        if meter:
            fig["cpu_ms_per_job"] = CpuMeter.per_job_ms(before, meter.read(), len(ids))
        summary[f"inference_{workers}_worker"] = fig
        say(_phase_line(fig))
        if "cpu_ms_per_job" in fig:
            say("  CPU per job, by process:\n" + "\n".join(cpu_table(fig["cpu_ms_per_job"])))


def _celery_phase(stack, provider, args, batches: int, summary: dict, journal: Journal, scope: list[str]) -> None:
    """The same jobs, as many as an SQS phase, on the Celery transport (a system of its own, 2 Celery workers), with
    CPU per job by process, against the raw Redis ceiling."""
    say(
        f"\n[4/5] {batches * 5} trivial inference jobs on the Celery transport (Redis broker) from {args.clients} "
        f"client threads, 2 Celery workers × 4 concurrent; the raw Redis ceiling (LPUSH + BRPOP, 1000 messages)"
    )
    summary["redis_ceiling"] = rc = redis_ceiling(stack.redis.url, 1000)
    say(
        f"  {rc['send_receive_delete_per_s']} msg/s end to end (push {rc['send_per_s']}/s, "
        f"pop {rc['receive_delete_per_s']}/s)"
    )
    celery = SystemUnderTest(stack, progress=say, transport="celery", isolated=True)
    scope.append(celery.queue_name)
    try:
        celery_api = celery.start_api()
        celery.start_workers(2, concurrency=4)
        meter = system_meter(provider, celery)
        before = meter.read() if meter else None
        ids, fig = submit_and_wait(
            celery_api,
            stack,
            [inference_batch(PATTERNS, seed=20_000 + i) for i in range(batches)],
            "celery, 2 workers",
            concurrency=args.clients,
            journal=journal,
        )
        if meter:
            fig["cpu_ms_per_job"] = CpuMeter.per_job_ms(before, meter.read(), len(ids))
    finally:
        celery.stop()
    summary["inference_2_worker_celery"] = fig
    say(_phase_line(fig))
    if "cpu_ms_per_job" in fig:
        say("  CPU per job, by process:\n" + "\n".join(cpu_table(fig["cpu_ms_per_job"])))


def _mixed_phase(sut: SystemUnderTest, args, small: int, summary: dict, journal: Journal) -> None:
    """Score uploads and the five patterns together, with the mock OpenAI service answering a share with 500."""
    say(
        f"\n[5/5] mixed load: {args.scores} score uploads + {small * 5} inference jobs, "
        f"mock OpenAI answering {args.error_rate:.0%} with HTTP 500 (the SDK retries)"
    )
    control = MockOpenAIControl(sut.stack.openai)
    control.configure(error_rate=args.error_rate, jitter_seconds=0.05, seed=7)
    mixed = []
    for i in range(max(args.scores, small)):
        if i < args.scores:
            mixed.append(score_upload(MUSICXML, f"Chorale {i}"))
        if i < small:
            mixed.append(inference_batch(PATTERNS, seed=1000 + i))
    _, fig = submit_and_wait(sut.api_url, sut.stack, mixed, "mixed", journal=journal)
    upstream = control.requests()
    fig["mock_openai"] = {
        "requests": len(upstream),
        "injected_errors": sum(1 for r in upstream if (r["status"] or 0) >= 500),
        "retried": sum(1 for r in upstream if (r["retry_count"] or 0) > 0),
    }
    summary["mixed"] = fig
    control.reset()
    for kind, k in fig.get("by_kind", {}).items():
        say(
            f"  {kind:<9} jobs: queue wait p95 {k['queue_wait_ms_p95']} ms, longest {k['queue_wait_ms_max']} ms; "
            f"enqueue→done p95 {k['enqueue_to_done_ms_p95']} ms"
        )


def _print_summary(summary: dict) -> None:
    print("\nsummary")
    if "sqs_ceiling" in summary:
        ceiling = summary["sqs_ceiling"]["send_receive_delete_per_s"]
        print(f"  raw SQS ceiling              {ceiling:>8} msg/s")
        for w in (1, 2):
            f = summary.get(f"inference_{w}_worker")
            if f:
                cpu = f.get("cpu_ms_per_job", {})
                print(
                    f"  inference, {w} worker(s)       {f['jobs_per_s']:>8} jobs/s  ({f['jobs_per_s'] / ceiling:.1%} of "
                    f"the ceiling; enqueue→done p95 {f['enqueue_to_done_ms_p95']} ms"
                    + (f"; CPU {cpu['system']} ms/job in the system's processes)" if cpu else ")")
                )
    f = summary.get("inference_2_worker_celery")
    if f and "redis_ceiling" in summary:
        rc = summary["redis_ceiling"]["send_receive_delete_per_s"]
        print(f"  raw Redis ceiling            {rc:>8} msg/s")
        print(
            f"  inference, 2 Celery workers  {f['jobs_per_s']:>8} jobs/s  ({f['jobs_per_s'] / rc:.1%} of "
            f"the Redis ceiling; enqueue→done p95 {f['enqueue_to_done_ms_p95']} ms"
            + (
                f"; CPU {f['cpu_ms_per_job']['system']} ms/job in the system's processes)"
                if "cpu_ms_per_job" in f
                else ")"
            )
        )
        sqs = summary.get("inference_2_worker")
        if sqs:
            print(f"  Celery ÷ SQS, 2 workers      {f['jobs_per_s'] / sqs['jobs_per_s']:>8.2f}  (goal ≥ 1)")
    if "mixed" in summary:
        m = summary["mixed"]
        longest = m.get("by_kind", {}).get("inference", {}).get("queue_wait_ms_max")
        if longest is not None:
            print(
                f"  inference behind scores      {longest:>8} ms  (the longest queue wait of an inference job in the "
                f"mixed load; goal ≤ 1000 ms)"
            )
        score = m.get("by_kind", {}).get("score")
        if score:
            print(
                f"  scores in the mixed load     {score['queue_wait_ms_p95']:>8} ms  (queue wait p95, goal ≤ 2000 ms; "
                f"enqueue→done p95 {score['enqueue_to_done_ms_p95']} ms)"
            )
        print(
            f"  mixed load                   {m['jobs_per_s']:>8} jobs/s  {m['by_status']}; mock OpenAI saw "
            f"{m['mock_openai']['requests']} requests, {m['mock_openai']['injected_errors']} injected 500s"
        )
    if "ledger" in summary:
        lg = summary["ledger"]
        checked = sum(lg["content"].get("checked", {}).values()) if lg.get("content") else 0
        print(
            f"  ledger                       {lg['journal'].get('accepted')} jobs in the client journal, "
            f"{lg['jobs']} judged, {len(lg['problems'])} problems; {checked} outputs checked against the oracle, "
            f"{lg['content'].get('mismatches', 0) if lg.get('content') else '?'} mismatches"
        )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    provider = choose_provider(args.stack, progress=say)
    sut = None
    summary: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    journal = Journal(source="demo")  # what the API told the demo's clients: the ledger's accepted set
    scope: list[str] = []  # the queues whose every job must be in the journal
    code = 1
    batches = max(1, args.jobs // 5)
    small = min(batches, 60)  # the mixed phase: 300 inference jobs
    try:
        stack = provider.start()
        summary["stack_ready_s"] = stack.ready_seconds
        _sqs_ceiling(stack, summary)
        sut = SystemUnderTest(stack, progress=say)
        scope.append(sut.queue_name)
        sut.start_api()
        _sqs_phases(sut, system_meter(provider, sut), args, batches, summary, journal)
        _celery_phase(stack, provider, args, batches, summary, journal, scope)
        _mixed_phase(sut, args, small, summary, journal)
        summary["ledger"], code = ledger.final_verdict(
            stack,
            journal,
            say,
            "\nledger: every job the clients were told was accepted (their journal) in exactly one terminal state, "
            "none failed, alike in Postgres, Redis and Kafka, its outputs checked against the oracle's own …",
            scope=scope,
        )
    except KeyboardInterrupt:
        say("\ninterrupted")
    finally:
        if sut:
            sut.stop()
        provider.stop()

    out = Path(args.report_dir) / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dumps(summary))
    _print_summary(summary)
    print(f"  figures saved to {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
