"""Hostile uploads: send one file to a running system while a stream of inference jobs flows through the same
workers, and measure how the system dealt with it — the job's end, the workers' peak memory (job processes included),
the stream's jobs/s, and whether a worker died or a job process was left behind."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from harness.drivers import http
from harness.oracles.contract import COMPLETED, FAILED, TERMINAL
from harness.stack.process import family, process_table


def dense_score(measures: int = 250, per_measure: int = 16) -> bytes:
    """A valid MusicXML score that is simply a lot of music: ``measures`` × ``per_measure`` sixteenth notes (250 × 16:
    404 KB, 8.4 minutes at the default tempo, ~2 s of music21 reading and 20-40 MB of memory here)."""
    steps = "CDEFGAB"
    body = "".join(
        f'<measure number="{m}">'
        + "".join(
            f"<note><pitch><step>{steps[(m + i) % 7]}</step><octave>{4 + i % 2}</octave></pitch><duration>1"
            "</duration><type>16th</type></note>"
            for i in range(per_measure)
        )
        + "</measure>"
        for m in range(1, measures + 1)
    )
    return (
        '<?xml version="1.0"?><score-partwise version="3.1"><part-list><score-part id="P1"><part-name>P'
        '</part-name></score-part></part-list><part id="P1"><measure number="0"><attributes><divisions>4'
        f"</divisions></attributes></measure>{body}</part></score-partwise>"
    ).encode()


class Stream:
    """Inference jobs submitted in a steady trickle (20/s at most, 2 000 at most) while a case runs."""

    def __init__(self, api: str):
        self.api, self.stop = api, threading.Event()
        self.ids: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from system.patterns import PATTERNS, generate

        with http.client(base_url=self.api, timeout=10) as c:
            i = 0
            while not self.stop.is_set() and i < 2000:
                r = c.post(
                    "/api/v1/inference",
                    json={"pattern": PATTERNS[i % 5], "values": generate(PATTERNS[i % 5], 32, seed=i)},
                )
                if r.status_code == 202:
                    self.ids += r.json()["job_ids"]
                i += 1
                time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(15)


def finished_between(dsn: str, ids: list[str], t0: float, t1: float) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[]) AND finished_at BETWEEN "
            "to_timestamp(%s) AND to_timestamp(%s) AND status = %s",
            (ids, t0, t1, COMPLETED),
        ).fetchone()[0]


def job_row(dsn: str, job_id: str) -> dict:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT status, error_code, error_message, attempts, result::text AS result FROM jobs WHERE id = %s",
            (job_id,),
        ).fetchone()


def job_processes(worker_pids: list[int]) -> list[int]:
    """The per-job processes alive under the workers: their grandchildren (children of their score forkservers, the
    worker's only children that fork)."""
    table = process_table()
    servers = {pid for pid, (ppid, _) in table.items() if ppid in worker_pids}
    return sorted(pid for pid, (ppid, _) in table.items() if ppid in servers)


@dataclass
class Outcome:
    http: int
    bytes: int
    seconds: float = 0.0
    job: dict = field(default_factory=dict)  # status, error_code, error_message, attempts, result
    worker_peak_rss_mb: float = 0.0  # the largest of worker + its descendants (job processes included)
    worker_rss_before_mb: float = 0.0
    stream_jobs_per_s: float = 0.0
    workers_alive: bool = True
    workers_replaced: bool = False
    job_processes_left: list[int] = field(default_factory=list)
    refusal: str = ""

    def figures(self) -> dict:
        return {
            "http": self.http,
            "bytes": self.bytes,
            "status": self.job.get("status"),
            "error_code": self.job.get("error_code"),
            "reason": (self.job.get("error_message") or "")[:160],
            "attempts": self.job.get("attempts"),
            "seconds": self.seconds,
            "worker_peak_rss_mb": self.worker_peak_rss_mb,
            "worker_rss_before_mb": self.worker_rss_before_mb,
            "stream_jobs_per_s": self.stream_jobs_per_s,
        }


def _rss_with_descendants(pids: list[int]) -> list[int]:
    """Each process's resident bytes with its descendants' (job processes included), from one read of /proc."""
    table = process_table()
    return [sum(_rss(member) for member in family(pid, table)) for pid in pids]


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):  # ended meanwhile
        return 0


PAGE = os.sysconf("SC_PAGE_SIZE")


def deal_with(sut, dsn: str, name: str, data: bytes, timeout: float = 60) -> Outcome:
    """Upload ``data`` as ``name`` to ``sut`` while a :class:`Stream` runs; wait (≤ ``timeout``) for the job's end."""
    pids_before = [w.pid for w in sut.workers]
    base = max(_rss_with_descendants(pids_before))
    peak = [base]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            peak[0] = max(peak[0], *_rss_with_descendants(pids_before))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    with Stream(sut.api_url) as stream:
        r = http.post(f"{sut.api_url}/api/v1/scores", files={"file": (name, data)}, timeout=30)
        out = Outcome(http=r.status_code, bytes=len(data))
        if r.status_code == 202:
            job = r.json()["job_id"]
            deadline = time.monotonic() + timeout
            out.job = job_row(dsn, job)
            while out.job["status"] not in TERMINAL and time.monotonic() < deadline:
                time.sleep(0.2)
                out.job = job_row(dsn, job)
        else:
            out.refusal = (
                str(r.json().get("detail") or "")
                if r.headers.get("content-type", "").startswith("application/json")
                else ""
            )
        t1 = time.time()
        time.sleep(1.0)  # the stream's jobs accepted during the case have a moment to finish
    sampling.set()
    sampler.join(2)
    out.seconds = round(t1 - t0, 2)
    out.worker_peak_rss_mb = round(peak[0] / 2**20, 1)
    out.worker_rss_before_mb = round(base / 2**20, 1)
    out.stream_jobs_per_s = round(finished_between(dsn, stream.ids, t0, t1 + 1.0) / (t1 + 1.0 - t0), 2)
    out.workers_alive = all(w.proc.poll() is None for w in sut.workers)
    out.workers_replaced = [w.pid for w in sut.workers] != pids_before
    out.job_processes_left = job_processes(pids_before)
    return out


def budget_problems(out: Outcome, code: str) -> list[str]:
    """What is wrong with how a job past its budget was dealt with (empty: nothing). It must fail with ``code`` on its
    first attempt, its worker must live on without a job process left behind, and other jobs must keep flowing."""
    problems = []
    if out.http != 202:
        problems.append(f"the upload was refused ({out.http}), so the budget was never tested")
        return problems
    if (out.job.get("status"), out.job.get("error_code")) != (FAILED, code):
        problems.append(
            f"the job ended {out.job.get('status')!r} ({out.job.get('error_code')}), not failed with {code}"
        )
    if out.job.get("attempts") != 1:
        problems.append(f"the job ran {out.job.get('attempts')} times: it was handed to a worker again")
    if not out.workers_alive or out.workers_replaced:
        problems.append("a worker died dealing with it")
    if out.job_processes_left:
        problems.append(f"job processes left running: {out.job_processes_left}")
    if out.stream_jobs_per_s <= 0:
        problems.append("no other job finished while it was dealt with")
    return problems
