"""Load runs: Locust as a subprocess (never in-process: it monkey-patches with gevent), queue-depth sampling,
queue-native figures from Postgres, SLO verdicts and one report per run.

    python -m harness.programs.load                         # its own stack + system, 20 users for 60 s, then the report
    python -m harness.programs.load --host http://127.0.0.1:8000 --users 20 --duration 60
    python -m harness.programs.load --workers 2             # distributed: a Locust master and 2 workers
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from harness.drivers.prometheus import PrometheusClient
from harness.drivers.throughput import percentile
from harness.oracles import slo, two_judges
from harness.oracles.contract import OPEN, sql_in
from harness.oracles.windows import arrival_verdict
from harness.reports import report
from harness.stack.endpoints import PrometheusEndpoint, Stack

ROOT = Path(__file__).resolve().parents[2]


class QueueSampler:
    """The system's queue depth every ``period`` seconds, in a thread, while the load runs (and while the backlog
    drains): its SQS queue and DLQ when it has them, plus the Celery transport's lists of the same names on Redis
    (waiting tasks; dead letters). Read from the brokers themselves."""

    def __init__(self, stack: Stack, queue_name: str, dlq_name: str, period: float = 1.0):
        import redis

        self.sqs = stack.aws.client("sqs")
        self.names = (queue_name, dlq_name)
        self.redis = redis.Redis.from_url(stack.redis.url, socket_timeout=2, socket_connect_timeout=2)
        self.urls: tuple[str, str] | None = None
        self.period = period
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sqs(self) -> tuple[int, int, int]:
        """(waiting, in flight, dead letters) on SQS; zeros while the system has no SQS queue (all on Celery)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        if self.urls is None:
            try:
                queue_url, dlq_url = (self.sqs.get_queue_url(QueueName=n)["QueueUrl"] for n in self.names)
                self.urls = (queue_url, dlq_url)
            except self.sqs.exceptions.QueueDoesNotExist:
                return 0, 0, 0
        a = self.sqs.get_queue_attributes(QueueUrl=self.urls[0], AttributeNames=names)["Attributes"]
        d = self.sqs.get_queue_attributes(QueueUrl=self.urls[1], AttributeNames=names[:1])["Attributes"]
        return int(a[names[0]]), int(a[names[1]]), int(d[names[0]])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                waiting, in_flight, dlq = self._sqs()
                pipe = self.redis.pipeline()
                for name in self.names:
                    pipe.llen(name)
                celery_waiting, celery_dead = pipe.execute()
                self.samples.append(
                    {
                        "t": time.time(),
                        "waiting": waiting + celery_waiting,
                        "in_flight": in_flight,
                        "dlq": dlq + celery_dead,
                    }
                )
            except Exception:  # a sample lost is not a run lost
                pass
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.redis.close()


def run_locust(
    host: str,
    users: int,
    spawn_rate: float,
    duration_s: int,
    out_dir: Path,
    workers: int = 0,
    extra_env: dict | None = None,
    user_classes: list[str] | None = None,
    stop: threading.Event | None = None,
    reset_stats: bool = False,
    scrape: tuple[PrometheusEndpoint | None, dict[str, str]] | None = None,
) -> subprocess.CompletedProcess:
    """Headless Locust for ``duration_s`` seconds; CSV stats (with history) under ``out_dir``. ``user_classes``
    limits the run to those users of the locustfile (default: all three). ``stop`` (one process only): set it to end
    the load sooner — Locust is sent SIGTERM, stops its users and writes its stats as at the end of its time.
    ``scrape`` (a Prometheus and the labels of the system under load; one process only): Prometheus scrapes Locust's
    own figures (``harness.drivers.locust_metrics``) while it runs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(extra_env or {}), "VERISIM_API": host}
    prometheus, labels = scrape or (None, {})
    if prometheus is None or workers:
        return _run_locust(host, users, spawn_rate, duration_s, out_dir, workers, env, user_classes, stop, reset_stats)
    port = _free_port()
    client = PrometheusClient(prometheus)
    client.scrape(f"locust-{port}", [f"127.0.0.1:{port}"], {"component": "locust", **labels})
    try:
        env["VERISIM_LOCUST_METRICS_PORT"] = str(port)
        return _run_locust(host, users, spawn_rate, duration_s, out_dir, workers, env, user_classes, stop, reset_stats)
    finally:
        client.forget(f"locust-{port}")


def _run_locust(
    host, users, spawn_rate, duration_s, out_dir: Path, workers, env, user_classes, stop, reset_stats
) -> subprocess.CompletedProcess:
    base = [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--host", host]
    common = [
        "--headless",
        "-u",
        str(users),
        "-r",
        str(spawn_rate),
        "-t",
        f"{duration_s}s",
        "--stop-timeout",
        # the open model's submissions in flight get their answers (harness.drivers.arrivals.ANSWER_GRACE_S)
        "15" if env.get("VERISIM_ARRIVAL") else "5",
        "--csv",
        str(out_dir / "locust"),
        "--csv-full-history",
        "--only-summary",
        "--html",
        str(out_dir / "locust.html"),
        *(["--reset-stats"] if reset_stats else []),
        *(user_classes or []),
    ]
    timeout = duration_s + 120
    if not workers:
        return _one_process(base + common, env, timeout, stop)
    return _distributed(base, common, env, timeout, workers, reset_stats)


def _one_process(cmd: list[str], env, timeout: float, stop: threading.Event | None) -> subprocess.CompletedProcess:
    """Locust in one process until its time is up or ``stop`` is set (then SIGTERM: it stops its users and writes
    its stats, as at its end); its output read meanwhile."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    with ThreadPoolExecutor(1) as reader:  # read its output meanwhile: a full pipe would stall it
        output = reader.submit(proc.communicate)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and not (stop is not None and stop.is_set()) and time.monotonic() < deadline:
            time.sleep(0.2)
        overran = proc.poll() is None and time.monotonic() >= deadline
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, err = output.result(timeout=30)
        except FuturesTimeout:
            proc.kill()
            out, err = output.result()
    if overran:
        raise subprocess.TimeoutExpired(proc.args, timeout, out, err)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _distributed(
    base: list[str], common: list[str], env, timeout: float, workers: int, reset_stats: bool
) -> subprocess.CompletedProcess:
    """A Locust master and ``workers`` Locust workers on loopback; the master's output and exit code."""
    master_port = _free_port()
    master = subprocess.Popen(
        base
        + common
        + [
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(master_port),
            "--expect-workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    helpers = [
        subprocess.Popen(
            base
            + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)]
            + (["--reset-stats"] if reset_stats else []),  # Locust: on the master and on every worker
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        for _ in range(workers)
    ]
    try:
        out, err = master.communicate(timeout=timeout)
    finally:
        for h in helpers:
            try:
                h.wait(15)
            except subprocess.TimeoutExpired:
                h.kill()
                h.wait(5)
    return subprocess.CompletedProcess(master.args, master.returncode, out, err)


def _free_port() -> int:
    from harness.stack.process import free_ports

    return free_ports(1)[0]


def api_figures(out_dir: Path) -> tuple[dict, list[dict]]:
    """Per-endpoint figures from Locust's stats CSV, and the aggregated history (latency/RPS over time)."""
    api = {}
    with open(out_dir / "locust_stats.csv") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "Aggregated":
                continue
            name = row["Name"]
            n, failed = int(row["Request Count"]), int(row["Failure Count"])
            api[name] = {
                "requests": n,
                "failures": failed,
                "error_rate": round(failed / n, 5) if n else 0.0,
                "p50_ms": _num(row["50%"]),
                "p95_ms": _num(row["95%"]),
                "p99_ms": _num(row["99%"]),
                "rps": _num(row["Requests/s"]),
            }
    history = []
    with open(out_dir / "locust_stats_history.csv") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] != "Aggregated":
                continue
            history.append(
                {
                    "t": int(row["Timestamp"]),
                    "users": int(row["User Count"]),
                    "rps": _num(row["Requests/s"]),
                    "p50_ms": _num(row["50%"]),
                    "p95_ms": _num(row["95%"]),
                    "failures_per_s": _num(row["Failures/s"]),
                }
            )
    return api, history


def _num(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _stage_figures(rows: list[tuple[str, float]]) -> dict:
    """Each pipeline stage's p50, p95 and slowest run (ms), from the stage timings the worker recorded per job: where
    a kind's time to done went."""
    by_stage: dict[str, list[float]] = {}
    for stage, ms in rows:
        by_stage.setdefault(stage, []).append(float(ms))
    return {
        stage: {
            "runs": len(ms),
            "p50_ms": _r(percentile(ms, 50)),
            "p95_ms": _r(percentile(ms, 95)),
            "max_ms": _r(max(ms)),
        }
        for stage, ms in sorted(by_stage.items())
    }


def queue_figures(stack: Stack, started: datetime, load_ended: float, timeout: float = 300) -> dict:
    """Wait for every job accepted during the run to end, then the queue-native figures from their timestamps."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(stack.postgres.dsn) as conn:
        while True:
            left = conn.execute(
                f"SELECT count(*) FROM jobs WHERE enqueued_at >= %s AND status IN {sql_in(OPEN)}", (started,)
            ).fetchone()[0]
            if left == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        rows = conn.execute(
            "SELECT kind, status, attempts, extract(epoch FROM enqueued_at), extract(epoch FROM started_at), "
            "extract(epoch FROM finished_at) FROM jobs WHERE enqueued_at >= %s",
            (started,),
        ).fetchall()
        models = conn.execute(
            "SELECT r.model_name, r.inference_ms FROM inference_results r JOIN jobs j ON j.id = r.job_id "
            "WHERE j.enqueued_at >= %s",
            (started,),
        ).fetchall()
        stage_rows = conn.execute(
            "SELECT j.kind, s.stage, s.duration_ms FROM job_stages s JOIN jobs j ON j.id = s.job_id "
            "WHERE j.enqueued_at >= %s",
            (started,),
        ).fetchall()
    per_kind: dict = {}
    for kind in {r[0] for r in rows}:
        ks = [r for r in rows if r[0] == kind and r[5] is not None]
        waits = [(float(r[4]) - float(r[3])) * 1000 for r in ks if r[4] is not None]
        dones = [(float(r[5]) - float(r[3])) * 1000 for r in ks]
        per_kind[kind] = {
            "jobs": len([r for r in rows if r[0] == kind]),
            "finished": len(ks),
            "wait_p50_ms": _r(percentile(waits, 50)),
            "wait_p95_ms": _r(percentile(waits, 95)),
            "done_p50_ms": _r(percentile(dones, 50)),
            "done_p95_ms": _r(percentile(dones, 95)),
            "stages": _stage_figures([(stage, ms) for k, stage, ms in stage_rows if k == kind]),
        }
    finished = [float(r[5]) for r in rows if r[5] is not None]
    first = min((float(r[3]) for r in rows), default=None)
    by_model: dict = {}
    for name, ms in models:
        by_model.setdefault(name, []).append(ms)
    return {
        "jobs": len(rows),
        "unfinished_jobs": len(rows) - len(finished),
        "by_status": {s: sum(1 for r in rows if r[1] == s) for s in {r[1] for r in rows}},
        "queue": per_kind,
        "throughput_jobs_per_s": round(len(finished) / max(max(finished) - first, 1e-6), 3) if finished else 0.0,
        "drain_s": round(max(0.0, max(finished) - load_ended), 3) if finished else None,
        "failed_jobs": sum(1 for r in rows if r[1] == "failed"),
        "redelivered_jobs": sum(1 for r in rows if r[2] > 1),
        "models": {
            m: {"count": len(v), "p50_ms": _r(percentile(v, 50)), "p95_ms": _r(percentile(v, 95))}
            for m, v in by_model.items()
        },
        "finished_times": sorted(finished),
    }


def _r(v):
    return None if v is None else round(v, 3)


def capacity(stack: Stack, host: str, ceiling: dict, requests: int = 60, label: str = "capacity", journal=None) -> dict:
    """Jobs/s while a backlog exists: a burst of ``requests`` × 5 inference jobs sent from 8 client threads, faster
    than the workers take them (even through a slow API), timed from the jobs' own timestamps, and its share of the
    raw SQS ceiling measured in the same run."""
    from harness.drivers.throughput import inference_batch, submit_and_wait
    from system.patterns import PATTERNS

    _, fig = submit_and_wait(
        host,
        stack,
        [inference_batch(PATTERNS, seed=90_000 + i) for i in range(requests)],
        label,
        concurrency=8,
        journal=journal,
    )
    share = fig.get("jobs_per_s", 0) / ceiling["send_receive_delete_per_s"]
    return {
        "jobs": fig["jobs"],
        "terminal": fig["terminal"],
        "completed": fig.get("completed", 0),
        "failed": fig.get("failed", 0),
        "jobs_per_s": fig.get("jobs_per_s"),
        "enqueue_to_done_p95_ms": fig.get("enqueue_to_done_ms_p95"),
        "share_of_ceiling": round(share, 5),
    }


CEILINGS = ("sqs", "lstm")  # what measure() can time first: the SQS emulator, the LSTM's raw forward pass


def measure(
    stack: Stack,
    host: str,
    queue_name: str,
    dlq_name: str,
    users: int,
    duration_s: int,
    out_dir: Path,
    workers: int = 0,
    spawn_rate: float | None = None,
    user_classes: list[str] | None = None,
    burst_requests: int = 60,
    reset_stats: bool = True,
    slos: dict | None = None,
    arrival: str | None = None,
    arrival_mix: str | None = None,
    ceilings: tuple[str, ...] = CEILINGS,
) -> dict:
    """One bounded load run and everything it measured (what ``slo.evaluate`` and the report take): the raw SQS
    ceiling, Locust for ``duration_s``, the drain, then a capacity burst (``burst_requests`` × 5 jobs; 0: none),
    then the ledger over the clients' journal (Locust's and the burst's): every accepted job, its outputs.
    ``reset_stats``: Locust's own ``--reset-stats``, the ramp-up left out of the API figures (the first requests of a
    run meet cold connections: one of them alone can be a p99 of ~100 requests); a short run that must count every
    request (a planted defect's) passes False. When the stack has Prometheus, its alerts over the load
    (``harness.oracles.two_judges``: the rules of ``slos``, default slo.toml) are read once the backlog has drained, before
    the burst. ``arrival`` (a shape, ``harness.drivers.arrivals``): the submissions are offered at that rate (the open
    model) and ``users`` counts the dashboard readers and feed watchers beside them. ``ceilings``: the raw ceilings
    measured first, in the same run (of ``CEILINGS``): a run judged on no gate that divides by one leaves it out (the
    SQS ceiling alone is seconds of the emulator at full speed); the capacity burst needs ``sqs``."""
    unknown = set(ceilings) - set(CEILINGS)
    if unknown or (burst_requests and "sqs" not in ceilings):
        raise ValueError(f"ceilings {ceilings!r}: of {CEILINGS}, and 'sqs' for a capacity burst")
    from harness.drivers.model_ceiling import lstm_ceiling
    from harness.drivers.throughput import sqs_ceiling
    from harness.oracles import journal as journals

    # the emulator's own ceiling and the model's raw forward pass on this machine, measured in the same run
    ceiling = sqs_ceiling(stack.aws, 1000) if "sqs" in ceilings else None
    model_ceilings = {"lstm": lstm_ceiling()} if "lstm" in ceilings else {}
    started = datetime.now(UTC)
    journal_path = out_dir / "journal.jsonl"
    with QueueSampler(stack, queue_name, dlq_name) as sampler:
        run = run_locust(
            host,
            users,
            spawn_rate or max(1.0, users / 5),
            duration_s,
            out_dir,
            workers,
            extra_env={"VERISIM_JOURNAL": str(journal_path), **open_model_env(arrival, out_dir, arrival_mix)},
            user_classes=user_classes,
            reset_stats=reset_stats,
            scrape=(stack.prometheus, {"system": queue_name}),
        )
        load_ended = time.time()
        growth = backlog_growth(sampler.samples, started.timestamp() + 5, load_ended)
        figures = queue_figures(stack, started, load_ended)
        figures["backlog_growth_per_s"] = growth
        if arrival:
            figures["arrivals"] = open_model_figures(out_dir, load_ended)
        if stack.prometheus:  # requests as Locust reports them: after the ramp-up when its stats were reset
            ramp_s = users / (spawn_rate or max(1.0, users / 5)) if reset_stats else 0.0
            figures["prometheus"] = _prometheus_readings(stack, slos, queue_name, started.timestamp(), ramp_s)
        time.sleep(1.1)  # one more depth sample after the drain
    if burst_requests:
        burst = journals.Journal(journal_path, source="capacity burst")
        figures["capacity"] = capacity(stack, host, ceiling, burst_requests, journal=burst)
        burst.close()
        figures["failed_jobs"] += figures["capacity"]["failed"]  # the burst's failures are judged too
    _ledger(stack, journal_path, started, queue_name, dlq_name, figures)
    (out_dir / "locust.log").write_text(run.stdout + run.stderr)
    if not (out_dir / "locust_stats.csv").exists():
        raise RuntimeError(f"Locust produced no stats (exit {run.returncode}):\n{(run.stdout + run.stderr)[-3000:]}")
    api, history = api_figures(out_dir)
    figures.update(
        api=api,
        api_history=history,
        queue_depth=sampler.samples,
        users=users,
        duration_s=duration_s,
        locust_workers=workers,
        locust_exit=run.returncode,
        started=started.isoformat(),
        load_ended=load_ended,
        dlq_messages=max((s["dlq"] for s in sampler.samples), default=0),
        sqs_ceiling=ceiling,
        model_ceilings=model_ceilings,
        share_of_sqs_ceiling=(
            round(figures["throughput_jobs_per_s"] / ceiling["send_receive_delete_per_s"], 5) if ceiling else None
        ),
    )
    return figures


def open_model_env(arrival: str | None, out_dir: Path, mix: str | None = None) -> dict[str, str]:
    """The environment that makes Locust offer ``arrival`` (a shape) as the open model, its tally in the run folder;
    ``mix``: what the arrivals submit (``inference:16,score:1``, the default)."""
    if not arrival:
        return {}
    from harness.drivers import arrivals

    arrivals.parse(arrival)  # a mistake in the shape or the mix is told here, not by a Locust that fails to start
    if mix:
        arrivals.parse_mix(mix)
    env = {"VERISIM_ARRIVAL": arrival, "VERISIM_ARRIVAL_LOG": str(out_dir / "arrivals.jsonl")}
    return {**env, "VERISIM_ARRIVAL_MIX": mix} if mix else env


def open_model_figures(out_dir: Path, load_ended: float) -> dict:
    """What the open model's generator offered against what its shape asked (``arrivals.shortfall``), and per second
    asked, sent, late, missed and answered (the report's offered / achieved / completed plot)."""
    from harness.drivers import arrivals

    start, end, shape, seconds = arrivals.read_log(out_dir / "arrivals.jsonl")
    if shape is None or start is None:
        return {"shape": None, "shortfall": None, "series": []}
    return {
        "shape": str(shape),
        "start": start,
        **arrivals.shortfall(seconds, shape, start, min(end or load_ended, load_ended)),
        "series": arrivals.rollup(seconds, shape, start),
    }


def backlog_growth(samples: list[dict], since: float, until: float) -> float | None:
    """How fast the queue's backlog (waiting + in flight) grew while the load ran, in jobs/s: the least-squares slope
    of the depth samples between ``since`` and ``until``. A system that holds its load keeps it near 0; one offered
    more than it can do grows it by the difference (None: fewer than 5 samples)."""
    pts = [(s["t"], s["waiting"] + s["in_flight"]) for s in samples if since <= s["t"] <= until]
    if len(pts) < 5:
        return None
    mt = sum(t for t, _ in pts) / len(pts)
    md = sum(d for _, d in pts) / len(pts)
    var = sum((t - mt) ** 2 for t, _ in pts)
    return round(sum((t - mt) * (d - md) for t, d in pts) / var, 3) if var else None


def _prometheus_readings(stack: Stack, slos: dict | None, queue_name: str, since: float, ramp_s: float) -> list:
    """Prometheus' alerts over the run, over this system's series only (``harness.oracles.two_judges``)."""
    scope = {"system": queue_name, "queue": queue_name}
    readings = two_judges.read(stack.prometheus, slos or slo.load(), scope, since, since + ramp_s)
    return [asdict(r) for r in readings]


def _ledger(stack: Stack, journal_path: Path, started: datetime, queue_name: str, dlq_name: str, figures: dict) -> None:
    """The ledger over the clients' journal: every job they were told was accepted, its outputs, every store."""
    from harness.oracles import journal as journals
    from harness.oracles import ledger

    told = journals.read(journal_path, started=started.timestamp())
    figures["journal"] = told.summary()
    print(
        f"ledger over the client journal ({figures['journal']['accepted']} accepted, "
        f"{figures['journal']['refused']} refused) …",
        flush=True,
    )
    verdict = ledger.settle(stack, journal=told, scope=[queue_name], dlq_name=dlq_name, timeout=60)
    figures["ledger"] = ledger.as_dict(verdict)
    for line in ["  " + verdict.summary(), *ledger.content_lines(verdict)]:
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.programs.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default=None, help="a running API (its stack must be this machine's: see --stack-json)")
    ap.add_argument(
        "--users", type=int, default=None, help="Locust users (default 20; with --arrival: 10 readers and watchers)"
    )
    ap.add_argument(
        "--arrival",
        default=None,
        metavar="SHAPE",
        help="offer the submissions as an arrival rate (the open model), e.g. constant:10, ramp:5:40:60, "
        "step:5,10,20:30, spike:10:60:20:5 (submissions/s; harness/drivers/arrivals.py)",
    )
    ap.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    ap.add_argument("--workers", type=int, default=0, help="Locust worker processes (0 = one local process)")
    ap.add_argument("--system-workers", type=int, default=2, help="system worker processes when starting our own")
    ap.add_argument("--slo", type=Path, default=None, help="SLO file (default slo.toml)")
    from harness.drivers.system_under_test import add_system_options, apply_system_options

    add_system_options(ap, "the API / workers (e.g. slow_api)", "the gate")
    args = ap.parse_args(argv)
    apply_system_options(args)
    users = args.users or (10 if args.arrival else 20)
    if args.arrival:
        from harness.drivers import arrivals

        try:
            arrivals.parse(args.arrival)
        except arrivals.ShapeError as e:
            ap.error(str(e))
    if args.host:
        ap.error(
            "--host needs the stack's endpoints to read the jobs' timestamps; run without it to start "
            "a stack and system of its own (or use `locust -f locustfile.py` for API-only load)"
        )
    from harness.drivers.system_under_test import SystemUnderTest
    from harness.stack import choose_provider

    provider = choose_provider("local")
    sut = None
    try:
        stack = provider.start()
        run_dir = report.new_run_dir()
        sut = SystemUnderTest(stack, workdir=run_dir / "system", progress=print)  # logs stay with the report
        api_defects, worker_defects = _split_defects(args.sabotage)
        api = sut.start_api(sabotage=api_defects)
        for _ in range(args.system_workers):
            sut.start_worker(sabotage=worker_defects)
        offered = f"submissions at {args.arrival}/s and {users} readers" if args.arrival else f"{users} users"
        print(
            f"\nLocust: {offered} for {args.duration}s against {api}"
            f"{f' ({args.workers} Locust workers)' if args.workers else ''} …",
            flush=True,
        )
        slos = slo.load(args.slo)
        figures = measure(
            stack,
            api,
            sut.queue_name,
            sut.dlq_name,
            users,
            args.duration,
            run_dir,
            workers=args.workers,
            slos=slos,
            arrival=args.arrival,
        )
    finally:
        if sut:
            sut.stop()
        provider.stop()
    verdicts = slo.evaluate(slos, figures)
    if args.arrival:
        verdicts.insert(0, arrival_verdict(figures["arrivals"]))
    rows = two_judges.judge(slos, verdicts, figures)
    path = report.write(run_dir, figures, verdicts, extra={"two_judges": two_judges.as_dicts(rows)})
    print("\n".join(v.line() for v in verdicts))
    if rows:
        print("\n" + two_judges.table(rows))
    print(f"\nreport: {path}")
    return 0 if all(v.ok for v in verdicts) else 1


def _split_defects(names: str) -> tuple[str | None, str | None]:
    """``a,b,c`` -> (the API's defects, the workers'), each comma-joined or None."""
    from harness.sabotage import CATALOG

    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in CATALOG]
    if unknown:
        raise SystemExit(f"unknown defect(s) {unknown}; choose from {', '.join(sorted(CATALOG))}")
    api = ",".join(n for n in chosen if CATALOG[n].target == "api") or None
    worker = ",".join(n for n in chosen if CATALOG[n].target == "worker") or None
    return api, worker


if __name__ == "__main__":
    sys.exit(main())
