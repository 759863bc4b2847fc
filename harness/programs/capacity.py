"""Capacity of the queue path (``nox -s capacity`` / ``python -m harness.programs.capacity``): inference jobs through the API
and the SQS workers at 1, 2 and 4 worker processes, each phase next to the raw SQS ceiling measured in the same run,
with the CPU each job cost in every process (API, workers, Postgres, LocalStack, Kafka, Redis, the client).

Also: whether the submitting side had headroom (the 2-worker phase again with twice the client threads: if that gives
clearly more jobs/s, the client was the bottleneck and the figures say so), the enqueue→done p95 of a 300-job burst,
and which process saturates as workers are added (busy share = its CPU seconds per wall second; 2 cores here).
Optional ``--profile``: py-spy samples one worker and the API during the 2-worker phase; the top frames are printed.

Figures go to ``reports/capacity-<time>.json`` and a line of ``reports/bench-history.jsonl`` (kind ``capacity``).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.drivers import http
from harness.drivers.cpu import SYSTEM, CpuMeter, system_meter
from harness.drivers.cpu import table as cpu_table
from harness.drivers.system_under_test import SystemUnderTest
from harness.drivers.throughput import dumps, inference_batch, sqs_ceiling, submit_and_wait, warm_sqs
from harness.oracles import ledger
from harness.oracles.journal import Journal
from harness.polling import poll_until
from harness.reports import history
from harness.reports.report import REPORTS
from harness.stack import choose_provider
from harness.stack.choice import CHOICES
from system.patterns import PATTERNS

SERIES_PER_REQUEST = len(PATTERNS)  # one series of each pattern per request


def run_phase(
    sut: SystemUnderTest,
    stack,
    meter: CpuMeter | None,
    jobs: int,
    clients: int,
    label: str,
    seed: int,
    journal: Journal | None = None,
) -> tuple[list[str], dict]:
    """``jobs`` inference jobs (requests of one series per pattern) from ``clients`` threads; figures + CPU."""
    requests = max(1, jobs // SERIES_PER_REQUEST)
    before = meter.read() if meter else None
    t0 = time.monotonic()
    ids, fig = submit_and_wait(
        sut.api_url,
        stack,
        [inference_batch(PATTERNS, seed=seed + i) for i in range(requests)],
        label,
        concurrency=clients,
        journal=journal,
    )
    wall = time.monotonic() - t0
    fig["clients"] = clients
    fig["wall_s"] = round(wall, 2)
    if meter and before:
        after = meter.read()
        fig["cpu_ms_per_job"] = CpuMeter.per_job_ms(before, after, len(ids))
        # busy share: CPU seconds per wall second of the phase (1.0 = one core the whole time)
        fig["busy_cores"] = {k: round((after[k] - before[k]) / max(wall, 1e-9), 2) for k in after if k in before}
    return ids, fig


def mixed_phase(
    sut: SystemUnderTest, stack, scores: int, stream_per_s: float, timeout: float = 180, journal: Journal | None = None
) -> dict:
    """``scores`` score uploads at once, and meanwhile a steady stream of inference jobs (``stream_per_s`` requests of
    one series per pattern a second, well below capacity) until every score is done: how long did inference jobs wait
    in the queue while scores rendered? (Goal: ≤ 1 s; a worker keeps slots free for short jobs.)"""
    import threading

    from harness.drivers.throughput import count_terminal, job_figures, score_upload
    from system.simulators import scores as score_files

    content = score_files.musicxml()
    score_ids: list[str] = []
    stream_ids: list[str] = []
    stop = threading.Event()

    def stream():
        with http.client(base_url=sut.api_url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                t0 = time.monotonic()
                stream_ids.extend(inference_batch(PATTERNS, seed=5_000_000 + i)(c, journal))
                i += 1
                stop.wait(max(0.0, 1 / stream_per_s - (time.monotonic() - t0)))

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    started = time.monotonic()
    with http.client(base_url=sut.api_url, timeout=60) as c:
        for i in range(scores):
            score_ids.extend(score_upload(content, f"capacity {i}")(c, journal))
    poll_until(
        lambda: count_terminal(stack, score_ids)[0] >= len(score_ids), timeout - (time.monotonic() - started), 0.2
    )
    stop.set()
    t.join(30)
    poll_until(lambda: count_terminal(stack, stream_ids)[0] >= len(stream_ids), 60, 0.2)
    fig = job_figures(stack, score_ids + stream_ids)
    fig.update(
        scores=len(score_ids),
        stream_jobs=len(stream_ids),
        score_slots=sut.env.get("WORKER_SCORE_SLOTS"),
        span_s=round(time.monotonic() - started, 1),
        ids=score_ids + stream_ids,
    )
    return fig


def saturated(fig: dict, cores: int) -> str:
    """Which process family used the most CPU, and whether the machine's cores were all busy."""
    busy = fig.get("busy_cores") or {}
    if not busy:
        return "n/a (CPU not readable on this stack)"
    top, share = max(busy.items(), key=lambda kv: kv[1])
    total = sum(busy.values())
    state = "all cores busy" if total >= 0.9 * cores else f"{total:.2f} of {cores} cores busy"
    return f"{top} ({share:.2f} cores); {state}"


def py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "100",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def top_frames(raw: Path, n: int = 15) -> list[tuple[str, float]]:
    """Inclusive share of samples per function (``name (file)``, counted once per stack) from py-spy's collapsed
    stacks, threads' idle waits left out (a sample whose leaf is a wait is not work)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    if not raw.exists():
        return []
    idle = (
        "wait (threading",
        "_wait_for_tstate_lock",
        "select (selectors",
        "poll (selectors",
        "sleep",
        "_worker (concurrent",
        "get (queue",
        "acquire",
    )
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, num = line.rpartition(" ")
        if not num.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        if frames and frames[-1].startswith(idle):
            continue
        k = int(num)
        total += k
        for f in set(frames):
            counts[f] += k
    generic = (
        "<module>",
        "Thread.run (",
        "_bootstrap",
        "_run_code",
        "_run_module_as_main",
        "_worker (concurrent",
        "_WorkItem.run",
        "WorkerThread.run",
        "_run_sync_endpoint",
    )  # every stack's frame: no news
    return [(f, c / max(total, 1)) for f, c in counts.most_common() if not any(g in f for g in generic)][:n]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness.programs.capacity", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--stack",
        default="local",
        choices=CHOICES,
        help="where the backing services run (default: local; CPU per process only on local)",
    )
    ap.add_argument("--workers", default="1,2,4", help="worker-process counts, one phase each (default 1,2,4)")
    ap.add_argument("--concurrency", type=int, default=4, help="jobs at once per worker process (default 4)")
    ap.add_argument("--jobs", type=int, default=2000, help="inference jobs per phase (default 2000)")
    ap.add_argument("--clients", type=int, default=8, help="client threads submitting (default 8)")
    ap.add_argument("--burst", type=int, default=300, help="jobs in the enqueue→done burst at 2 workers (300; 0: none)")
    ap.add_argument("--no-headroom", action="store_true", help="skip the 2× client threads phase")
    ap.add_argument(
        "--mixed",
        type=int,
        default=12,
        help="score uploads in the mixed phase at 2 workers, with a "
        "steady inference stream: do short jobs wait behind score rendering? (12; 0: none)",
    )
    ap.add_argument(
        "--score-slots",
        type=int,
        default=None,
        help="WORKER_SCORE_SLOTS for the workers (default: the system's, half the concurrency)",
    )
    ap.add_argument("--profile", action="store_true", help="py-spy one worker and the API during the 2-worker phase")
    ap.add_argument("--report-dir", default=str(REPORTS), help="where the JSON goes (default: reports/)")
    return ap


def say(message: str) -> None:
    print(message, flush=True)


@dataclass
class Run:
    """One capacity run: its options, the system it measures and what it has measured so far."""

    args: argparse.Namespace
    sut: SystemUnderTest
    meter: CpuMeter | None
    journal: Journal
    summary: dict
    out_dir: Path
    stamp: str
    ceiling: float = 0.0
    seed: int = 0

    def next_seed(self) -> int:
        self.seed += 10_000
        return self.seed - 10_000


def _ceiling(run: Run) -> None:
    """The raw SQS ceiling (and what the emulator costs per message at it): the yardstick of every phase."""
    stack = run.sut.stack
    say("\nraw SQS ceiling (send batch + receive + delete, the best of 3 rounds of 1000 messages)")
    warm_sqs(stack.aws)  # untimed and unmetered: the emulator's first use loads its SQS provider
    before = run.meter.read() if run.meter else None
    run.summary["sqs_ceiling"] = c = sqs_ceiling(stack.aws, 1000, warm_up=0)
    run.ceiling = c["send_receive_delete_per_s"]
    say(f"  {run.ceiling} msg/s end to end (the best of {c['rounds']} rounds: {c['round_per_s']})")
    if run.meter and before:  # what the emulator itself costs per message at its best (batches of ten): a floor
        c["localstack_cpu_ms_per_msg"] = CpuMeter.per_job_ms(before, run.meter.read(), c["received_all_rounds"])[
            "localstack"
        ]
        say(f"  LocalStack CPU at its ceiling: {c['localstack_cpu_ms_per_msg']} ms per message (batches of 10)")


def _restart_workers(run: Run, n: int) -> None:
    """``n`` fresh workers, each with its connections open (a short warm-up) before any clock starts."""
    sut = run.sut
    for w in list(sut.workers):
        w.stop()
    sut.workers.clear()
    sut.start_workers(n, concurrency=run.args.concurrency)
    batches = [inference_batch(PATTERNS, seed=10**6 + i) for i in range(4 * n)]
    submit_and_wait(sut.api_url, sut.stack, batches, f"{n} worker(s): warm-up", journal=run.journal)


def _phase(run: Run, n: int, name: str, clients: int) -> None:
    """One measured phase of ``args.jobs`` jobs at ``n`` workers (profiled when ``name`` is "profile")."""
    args, sut = run.args, run.sut
    profiles = []
    if name == "profile":
        est = max(5.0, args.jobs / 150)
        for who, pid in (("worker", sut.workers[0].pid), ("api", sut.api.pid)):
            path = run.out_dir / f"capacity-{run.stamp}-{who}.txt"
            proc = py_spy(pid, est, path)
            if proc is None:
                say("  --profile: py-spy is not installed (it is a dev dependency: python3 dev.py setup); not profiled")
                break
            profiles.append((who, proc, path))
    note = {"headroom": " (headroom check)", "profile": " (profiled: py-spy on a worker and the API)"}.get(name, "")
    say(f"\n{args.jobs} inference jobs, {n} worker(s) × {args.concurrency}, {clients} client threads{note}")
    _, fig = run_phase(sut, sut.stack, run.meter, args.jobs, clients, f"{n}w/{clients}c", run.next_seed(), run.journal)
    fig.update(workers=n, phase=name, share_of_ceiling=round(fig["jobs_per_s"] / run.ceiling, 4))
    fig["saturated"] = saturated(fig, run.summary["cores"])
    run.summary["phases"].append(fig)
    say(
        f"  {fig['jobs_per_s']} jobs/s = {fig['share_of_ceiling']:.1%} of the ceiling; queue wait p95 "
        f"{fig['queue_wait_ms_p95']} ms; enqueue→done p95 {fig['enqueue_to_done_ms_p95']} ms"
    )
    if "cpu_ms_per_job" in fig:
        say("  CPU per job, by process:\n" + "\n".join(cpu_table(fig["cpu_ms_per_job"])))
        say(f"  busiest: {fig['saturated']}")
    for who, proc, path in profiles:
        if proc is not None:
            proc.wait(timeout=120)
            frames = top_frames(path)
            fig.setdefault("profile", {})[who] = [(f, round(s, 3)) for f, s in frames]
            say(f"  py-spy {who} (inclusive share of samples):")
            for f, s in frames:
                say(f"    {s:6.1%}  {f}")


def _mixed(run: Run) -> None:
    """Score uploads beside a steady inference stream: do short jobs wait behind score rendering?"""
    sut = run.sut
    say(
        f"\nmixed: {run.args.mixed} score uploads at once, and inference requests at 10/s until they are done "
        f"(2 workers; score slots per worker: {sut.env.get('WORKER_SCORE_SLOTS') or 'default (half)'})"
    )
    fig = mixed_phase(sut, sut.stack, run.args.mixed, 10.0, journal=run.journal)
    fig.pop("ids")
    run.summary["mixed"] = fig
    inf = fig.get("by_kind", {}).get("inference", {})
    say(
        f"  inference jobs: queue wait p95 {inf.get('queue_wait_ms_p95')} ms, longest "
        f"{inf.get('queue_wait_ms_max')} ms (goal ≤ 1000 ms); {fig['scores']} scores done in {fig['span_s']} s"
    )


def _burst(run: Run) -> None:
    say(f"\nburst: {run.args.burst} jobs at once, 2 workers (enqueue→done)")
    _, fig = run_phase(run.sut, run.sut.stack, None, run.args.burst, 1, "burst", run.next_seed(), run.journal)
    run.summary["burst"] = fig
    say(f"  enqueue→done p50 {fig['enqueue_to_done_ms_p50']} ms, p95 {fig['enqueue_to_done_ms_p95']} ms")


def _measure(run: Run, counts: list[int]) -> None:
    """Every phase: at each worker count the main phase; at 2 workers also the headroom, profiled, mixed and burst
    phases the options ask for."""
    args = run.args
    for n in counts:
        _restart_workers(run, n)
        phases = [("main", args.clients)]
        if n == 2 and not args.no_headroom:
            phases.append(("headroom", args.clients * 2))
        if n == 2 and args.profile:
            phases.append(("profile", args.clients))  # a phase of its own: sampling costs CPU too
        for name, clients in phases:
            _phase(run, n, name, clients)
        if n == 2 and args.mixed:
            _mixed(run)
        if n == 2 and args.burst:
            _burst(run)


def _record(summary: dict, main_phases: list[dict]) -> None:
    """The run's line in the history."""
    history.append(
        "capacity",
        {
            "sqs_ceiling_msgs_per_s": summary["sqs_ceiling"]["send_receive_delete_per_s"],
            "by_workers": {
                p["workers"]: {
                    "jobs_per_s": p["jobs_per_s"],
                    "share": p["share_of_ceiling"],
                    "cpu_system_ms": p.get("cpu_ms_per_job", {}).get("system"),
                }
                for p in main_phases
            },
            "burst_p95_ms": summary.get("burst", {}).get("enqueue_to_done_ms_p95"),
        },
    )


def _scaling_table(summary: dict, main_phases: list[dict]) -> None:
    """Every phase side by side, and whether the client had headroom (2× threads gave < 10 % more)."""
    print("\nscaling (the same run)")
    fams = [k for k in (*SYSTEM, "client")]
    print(
        f"  {'workers':>7} {'jobs/s':>8} {'share':>6} {'sys ms/job':>10}  "
        + " ".join(f"{f[:9]:>9}" for f in fams)
        + "   busiest"
    )
    for p in summary["phases"]:
        cpu = p.get("cpu_ms_per_job", {})
        print(
            f"  {p['workers']:>5}{p['phase'][0] if p['phase'] != 'main' else ' ':<2} {p['jobs_per_s']:>8} "
            f"{p['share_of_ceiling']:>6.1%} {cpu.get('system', float('nan')):>10} "
            + " ".join(f"{cpu.get(f, float('nan')):>9}" for f in fams)
            + f"   {p['saturated']}"
        )
    print(
        "  (ms/job columns: CPU per job in each process family; h = the headroom check, 2× client threads; "
        "p = the profiled phase)"
    )
    head = [p for p in summary["phases"] if p["phase"] == "headroom"]
    two = [p for p in main_phases if p["workers"] == 2]
    if head and two:
        gain = head[0]["jobs_per_s"] / max(two[0]["jobs_per_s"], 1e-9) - 1
        verdict = (
            "the client had headroom"
            if gain < 0.10
            else "the client limited the 2-worker figure: more client threads gave more jobs/s"
        )
        summary["client_headroom"] = {"gain": round(gain, 3), "verdict": verdict}
        print(f"  client: 2× threads gave {gain:+.1%} jobs/s → {verdict}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    provider = choose_provider(args.stack, progress=say)
    summary: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cores": os.cpu_count() or 1,
        "jobs_per_phase": args.jobs,
        "concurrency": args.concurrency,
        "phases": [],
    }
    out_dir = Path(args.report_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sut = None
    code = 1
    try:
        stack = provider.start()
        env = {"WORKER_SCORE_SLOTS": str(args.score_slots)} if args.score_slots else None
        sut = SystemUnderTest(stack, progress=say, env=env)
        # what the API told the clients: the ledger's accepted set
        run = Run(args, sut, system_meter(provider, sut), Journal(source="capacity"), summary, out_dir, stamp)
        _ceiling(run)
        sut.start_api()
        _measure(run, counts)
        summary["ledger"], code = ledger.final_verdict(
            stack,
            run.journal,
            say,
            "\nledger over the client journal: every job, its outputs …",
            scope=[sut.queue_name],
        )
    except KeyboardInterrupt:
        say("\ninterrupted")
    finally:
        if sut:
            sut.stop()
        provider.stop()

    out = out_dir / f"capacity-{stamp}.json"
    out.write_text(dumps(summary))
    main_phases = [p for p in summary["phases"] if p["phase"] == "main"]
    if main_phases:
        _record(summary, main_phases)
        _scaling_table(summary, main_phases)
        out.write_text(dumps(summary))
    print(f"  figures saved to {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
