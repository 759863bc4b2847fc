"""Throughput measurements shared by the demo and the benchmarks: the raw SQS ceiling, and jobs through the system."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence

import httpx
import psycopg

from harness.drivers import http
from harness.oracles.contract import FAILED, TERMINAL
from harness.oracles.journal import Journal, file_digest, series_digest
from harness.oracles.quantiles import (
    percentile,  # the gates' percentile (re-exported for harness.programs.load and chaos_load)
)
from harness.stack.endpoints import AwsEndpoint, Stack


def sqs_ceiling(aws: AwsEndpoint, n: int = 1000, body_bytes: int = 200, warm_up: int = 200, rounds: int = 3) -> dict:
    """send_message_batch(10) then receive(10) + delete_message_batch on a throwaway queue: the emulator's ceiling,
    the best of ``rounds`` timed rounds of ``n`` messages each (``round_per_s``: every round's rate).

    A first round of ``warm_up`` messages is not timed: the emulator loads its SQS provider on first use (measured:
    right after start-up an untimed first round halved the figure, 765 against 1 474 msg/s). A ceiling is what the
    emulator can do, so the best round counts. Measured on the 2-core machine: rounds within one LocalStack process
    agree within a few per cent when nothing else runs, but two LocalStack processes differ by up to 1.6× (its CPU at
    the ceiling 0.32 against 0.52 ms per message), so compare shares of the ceiling only within a run."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=f"ceiling-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    try:
        body = "x" * body_bytes
        if warm_up:
            _send_receive_delete(sqs, url, warm_up, body)
        timed = [_send_receive_delete(sqs, url, n, body) for _ in range(max(1, rounds))]
    finally:
        sqs.delete_queue(QueueUrl=url)
    send_s, receive_s, got = min(timed, key=lambda t: (t[0] + t[1]) / max(t[2], 1))
    return {
        "messages": n,
        "received": got,
        "rounds": len(timed),
        "received_all_rounds": sum(g for _, _, g in timed),
        "round_per_s": [round(g / (s + r), 1) for s, r, g in timed],
        "send_per_s": round(n / send_s, 1),
        "receive_delete_per_s": round(got / receive_s, 1),
        "send_receive_delete_per_s": round(got / (send_s + receive_s), 1),
    }


def warm_sqs(aws: AwsEndpoint, n: int = 200) -> None:
    """Send, receive and delete ``n`` messages on a throwaway queue: what ``sqs_ceiling`` does untimed first."""
    sqs_ceiling(aws, n, warm_up=0, rounds=1)


def _send_receive_delete(sqs, url: str, n: int, body: str) -> tuple[float, float, int]:
    """Send ``n`` messages in batches of 10, then receive and delete them ten at a time (within 120 s): (seconds
    sending, seconds receiving and deleting, messages received)."""
    t0 = time.perf_counter()
    for start in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": body} for i in range(min(10, n - start))]
        )
    t1 = time.perf_counter()
    got, deadline = 0, time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if msgs:
            sqs.delete_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
            )
            got += len(msgs)
    return t1 - t0, time.perf_counter() - t1, got


def redis_ceiling(redis_url: str, n: int = 1000, body_bytes: int = 200) -> dict:
    """LPUSH each message, then BRPOP each, on a throwaway list: the Celery broker's ceiling, measured the way
    ``sqs_ceiling`` measures the emulator's (one message per call, as Celery publishes and kombu fetches them)."""
    import redis

    key = f"ceiling-{uuid.uuid4().hex[:8]}"
    body = "x" * body_bytes
    with redis.Redis.from_url(redis_url) as r:
        try:
            t0 = time.perf_counter()
            for _ in range(n):
                r.lpush(key, body)
            t1 = time.perf_counter()
            got = 0
            while got < n and r.brpop([key], timeout=1):
                got += 1
            t2 = time.perf_counter()
        finally:
            r.delete(key)
    return {
        "messages": n,
        "received": got,
        "send_per_s": round(n / (t1 - t0), 1),
        "receive_delete_per_s": round(got / (t2 - t1), 1),
        "send_receive_delete_per_s": round(got / (t2 - t0), 1),
    }


def job_figures(stack: Stack, job_ids: list[str]) -> dict:
    """Figures from the jobs' own timestamps in Postgres (queue-native: not what a client saw). Rates count the jobs
    that completed (with or without warnings): a failed job did not do its work, however fast it failed."""
    with psycopg.connect(stack.postgres.dsn) as conn:
        rows = conn.execute(
            "SELECT status, extract(epoch FROM enqueued_at), extract(epoch FROM started_at), "
            "extract(epoch FROM finished_at), kind FROM jobs WHERE id = ANY(%s::uuid[])",
            (job_ids,),
        ).fetchall()
    done = [r for r in rows if r[0] in TERMINAL and r[0] != FAILED and r[3] is not None]
    terminal = sum(1 for r in rows if r[0] in TERMINAL)
    if not done:
        return {"jobs": len(job_ids), "terminal": terminal, "completed": 0, "failed": terminal}
    first_enqueued = min(float(r[1]) for r in done)
    last_finished = max(float(r[3]) for r in done)
    waits = [(float(r[2]) - float(r[1])) * 1000 for r in done if r[2] is not None]
    totals = [(float(r[3]) - float(r[1])) * 1000 for r in done]
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r[0]] = by_status.get(r[0], 0) + 1
    by_kind = {}  # per kind: in a mixed load, do short jobs wait behind long ones, and how long do long ones take?
    for kind in sorted({r[4] for r in done}):
        kw = [(float(r[2]) - float(r[1])) * 1000 for r in done if r[4] == kind and r[2] is not None]
        if kw:
            by_kind[kind] = {
                "jobs": len(kw),
                "queue_wait_ms_p95": round(percentile(kw, 95), 1),
                "queue_wait_ms_max": round(max(kw), 1),
                "enqueue_to_done_ms_p95": round(
                    percentile([(float(r[3]) - float(r[1])) * 1000 for r in done if r[4] == kind], 95), 1
                ),
            }
    return {
        "jobs": len(job_ids),
        "terminal": terminal,
        "completed": len(done),
        "failed": by_status.get(FAILED, 0),
        "by_status": by_status,
        "by_kind": by_kind,
        "jobs_per_s": round(len(done) / max(last_finished - first_enqueued, 1e-6), 1),
        "queue_wait_ms_p50": round(percentile(waits, 50), 1),
        "queue_wait_ms_p95": round(percentile(waits, 95), 1),
        "enqueue_to_done_ms_p50": round(percentile(totals, 50), 1),
        "enqueue_to_done_ms_p95": round(percentile(totals, 95), 1),
        "span_s": round(last_finished - first_enqueued, 3),
    }


def count_terminal(stack: Stack, job_ids: list[str]) -> tuple[int, int]:
    with psycopg.connect(stack.postgres.dsn) as conn:
        done, failed = conn.execute(
            "SELECT count(*) FILTER (WHERE status = ANY(%s)), "
            "count(*) FILTER (WHERE status = %s) FROM jobs WHERE id = ANY(%s::uuid[])",
            (list(TERMINAL), FAILED, job_ids),
        ).fetchone()
    return done, failed


class ProgressLine:
    """One live line: ``label  done/total  failed  rate``; a newline when finished."""

    def __init__(self, label: str, total: int, stream=sys.stdout, started: float | None = None):
        self.label, self.total, self.stream = label, total, stream
        self.started = started if started is not None else time.monotonic()
        self.tty = stream.isatty()
        self._last_print = 0.0

    def update(self, done: int, failed: int = 0, extra: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_print < (0.25 if self.tty else 5.0):
            return
        self._last_print = now
        rate = done / max(now - self.started, 1e-9)
        line = f"  {self.label:<34} {done:>6}/{self.total:<6} failed {failed:<5} {rate:8.1f}/s {extra}"
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def finish(self, done: int, failed: int = 0, extra: str = "") -> None:
        self.update(done, failed, extra, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def submit_and_wait(
    api_url: str,
    stack: Stack,
    submissions: list[Callable[[httpx.Client], list[str]]],
    label: str,
    timeout: float = 300,
    concurrency: int = 1,
    journal: Journal | None = None,
) -> tuple[list[str], dict]:
    """Run every submission (each returns the job ids it got accepted, and writes what it was told to ``journal``)
    from ``concurrency`` client threads, then wait until all are terminal."""
    journal = journal if journal is not None else Journal(source=label)
    from concurrent.futures import ThreadPoolExecutor

    job_ids: list[str] = []
    rejected = 0
    started = time.monotonic()
    with http.client(base_url=api_url, timeout=30, limits=httpx.Limits(max_connections=max(10, concurrency))) as client:
        p = ProgressLine(f"{label}: submit", len(submissions), started=started)

        def one(submit) -> list[str] | None:
            try:
                return submit(client, journal)
            except httpx.HTTPError:
                return None

        with ThreadPoolExecutor(max(1, concurrency)) as pool:
            for i, got in enumerate(pool.map(one, submissions), 1):
                if got is None:
                    rejected += 1
                else:
                    job_ids += got
                p.update(i, rejected)
        p.finish(len(submissions), rejected)
    p = ProgressLine(f"{label}: done", len(job_ids), started=started)
    deadline = time.monotonic() + timeout
    done = failed = 0
    while time.monotonic() < deadline:
        done, failed = count_terminal(stack, job_ids)
        p.update(done, failed)
        if done >= len(job_ids):
            break
        time.sleep(0.2)
    p.finish(done, failed)
    figures = job_figures(stack, job_ids)
    figures["rejected_submissions"] = rejected
    return job_ids, figures


def _answered(r: httpx.Response, journal: Journal | None, kind: str, digests: list[str], key: str) -> list[str]:
    """The ids a 202 carries, written to ``journal``; any other answer is a refusal, written and raised."""
    if r.status_code != 202:
        if journal is not None:
            journal.refused(kind, None, r.status_code)
        r.raise_for_status()
        raise httpx.HTTPStatusError(f"HTTP {r.status_code}, not 202", request=r.request, response=r)
    got = r.json()[key]
    ids = got if isinstance(got, list) else [got]
    if journal is not None:
        journal.accepted(ids, kind, digests)
    return ids


def inference_batch(patterns: Sequence[str], n_values: int = 48, seed: int = 0, horizon: int = 3):
    """One request carrying a series of each pattern (from the shared generators), with held-out true values. Each
    series is drawn with its own seed (``seed`` and its place in the request): no two jobs of a batch are alike, so a
    forecast handed to the wrong job shows."""
    from system.patterns import split

    def submit(client: httpx.Client, journal: Journal | None = None) -> list[str]:
        series = []
        for i, p in enumerate(patterns):
            values, actual = split(p, n_values, horizon, seed=seed * 16 + i)
            series.append({"pattern": p, "values": values, "actual": actual, "horizon": horizon})
        r = client.post("/api/v1/inference", json={"series": series})
        return _answered(r, journal, "inference", [series_digest(s) for s in series], "job_ids")

    return submit


def score_upload(content: bytes, title: str):
    def submit(client: httpx.Client, journal: Journal | None = None) -> list[str]:
        r = client.post("/api/v1/scores", files={"file": ("score.musicxml", content)}, data={"title": title})
        return _answered(r, journal, "score", [file_digest(content)], "job_id")

    return submit


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
