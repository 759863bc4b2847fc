"""Score upload load generator, as in the original design: ``python simulate_load.py --requests 200 --concurrency 20``.

Uploads a score N times with C requests in flight, prints each request's outcome and time, then a summary
(count, errors, p50/p95). Exit code 1 if any request failed. Without ``--file`` it uploads a Bach chorale
(BWV 66.6) written from music21's bundled corpus.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from system.jobs.lifecycle import TERMINAL, Status
from system.stats import percentile


def positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return v


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="simulate_load.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=positive_int, default=10, help="uploads to send (default 10)")
    ap.add_argument("--concurrency", type=positive_int, default=5, help="uploads in flight at once (default 5)")
    ap.add_argument(
        "--file",
        type=Path,
        default=None,
        help="score to upload (MusicXML, MXL, MIDI, ABC, Humdrum, PDF…); default: a Bach chorale",
    )
    ap.add_argument("--url", default="http://localhost:8000", help="operation server (default http://localhost:8000)")
    ap.add_argument("--title", default=None, help="title sent with each upload (translated by the worker)")
    ap.add_argument("--target-language", default=None, help="translation target (default: the server's)")
    ap.add_argument("--wait", action="store_true", help="then wait for every job to end and report their states")
    ap.add_argument("--timeout", type=float, default=600, help="seconds --wait waits at most (default 600)")
    return ap


class Uploads:
    """The uploads of one run: each one's time, the ids of the accepted jobs, the refusals by reason; each upload
    printed as it ends."""

    def __init__(self, client: httpx.Client, name: str, content: bytes, data: dict, total: int):
        self.client, self.name, self.content, self.data, self.total = client, name, content, data, total
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.errors: Counter = Counter()
        self.job_ids: list[str] = []
        self.counter = iter(range(1, total + 1))

    def one(self, _: int) -> None:
        t0 = time.monotonic()
        try:
            r = self.client.post("/api/v1/scores", files={"file": (self.name, self.content)}, data=self.data)
            ok = r.status_code == 202
            detail = f"job {r.json()['job_id']}" if ok else f"HTTP {r.status_code}: {r.text[:160]}"
        except httpx.HTTPError as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - t0
        with self.lock:
            n = next(self.counter)
            self.times.append(elapsed)
            if ok:
                self.job_ids.append(detail.split()[1])
            else:
                self.errors[detail.split(":")[0]] += 1
            print(f"[{n:>5}/{self.total}] {'ok    ' if ok else 'FAILED'} {elapsed:7.3f}s  {detail}", flush=True)

    def summary(self, wall: float) -> str:
        failed = sum(self.errors.values())
        lines = [
            f"\nsummary: {self.total} requests in {wall:.1f}s ({self.total / wall:.1f}/s), "
            f"{self.total - failed} accepted, {failed} failed; request time p50 {percentile(self.times, 50):.3f}s, "
            f"p95 {percentile(self.times, 95):.3f}s, max {max(self.times):.3f}s"
        ]
        return "\n".join(lines + [f"  {n} × {err}" for err, n in self.errors.most_common()])


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.file:
        if not args.file.is_file():
            ap.error(f"--file {args.file} does not exist")
        content, name = args.file.read_bytes(), args.file.name
    else:
        from system.simulators.scores import musicxml

        content, name = musicxml(), "bwv66.6.musicxml"
    data = {k: v for k, v in (("title", args.title), ("target_language", args.target_language)) if v}
    print(
        f"uploading {name} ({len(content)} bytes) to {args.url}: {args.requests} requests, "
        f"{args.concurrency} at a time",
        flush=True,
    )
    started = time.monotonic()
    with httpx.Client(base_url=args.url, timeout=60, limits=httpx.Limits(max_connections=args.concurrency)) as client:
        uploads = Uploads(client, name, content, data, args.requests)
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(uploads.one, range(args.requests)))
        print(uploads.summary(time.monotonic() - started))
        failed = sum(uploads.errors.values())
        if args.wait and uploads.job_ids:
            states = wait_for_jobs(client, uploads.job_ids, args.timeout)
            print(f"jobs: {dict(states)}")
            failed += states.get(Status.FAILED, 0) + states.get("not finished", 0)
    return 1 if failed else 0


def wait_for_jobs(client: httpx.Client, job_ids: list[str], timeout: float) -> Counter:
    pending = set(job_ids)
    states: Counter = Counter()
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for jid in list(pending):
            body = client.get(f"/api/v1/jobs/{jid}").json()
            if body.get("status") in TERMINAL:
                states[body["status"]] += 1
                pending.discard(jid)
        sys.stdout.write(f"\r  waiting: {len(job_ids) - len(pending)}/{len(job_ids)} jobs ended")
        sys.stdout.flush()
        if pending:
            time.sleep(0.5)
    print()
    if pending:
        states["not finished"] = len(pending)
    return states


if __name__ == "__main__":
    sys.exit(main())
