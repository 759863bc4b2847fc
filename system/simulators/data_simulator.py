"""Data simulator: keeps generating time series in five patterns and submits them as inference jobs.

    python3 data_simulator.py                                   # every 5 s, 1-5 series, until Ctrl-C
    python3 data_simulator.py --interval 3 --random-interval
    python3 data_simulator.py --interval 1 --min-batch 2 --max-batch 5 --count 50 --url http://localhost:8000

Each series carries its held-out true next values (``actual``), so the system scores every model's error.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
import uuid
from collections import Counter

import httpx

from system.patterns import PATTERNS, split


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="data_simulator.py",
        description=__doc__.split("\n\n")[0],
        epilog="Stops by itself after --count jobs or --duration seconds, whichever comes "
        "first; otherwise runs until Ctrl-C. Exit code 1 if any request failed.",
    )
    ap.add_argument("--interval", type=positive(float), default=5.0, help="seconds between batches (default 5)")
    ap.add_argument(
        "--random-interval", action="store_true", help="draw each interval from 50%%-150%% of --interval (default off)"
    )
    ap.add_argument("--min-batch", type=positive(int), default=1, help="fewest series per batch (default 1)")
    ap.add_argument("--max-batch", type=positive(int), default=5, help="most series per batch (default 5)")
    ap.add_argument("--url", default="http://localhost:8000", help="operation server (default http://localhost:8000)")
    ap.add_argument("--seed", type=int, default=None, help="seed for patterns, sizes and intervals (default random)")
    ap.add_argument("--count", type=positive(int), default=None, help="stop after this many jobs")
    ap.add_argument("--duration", type=positive(float), default=None, help="stop after this many seconds")
    ap.add_argument("--length", type=positive(int), default=48, help="observed values per series (default 48)")
    ap.add_argument(
        "--horizon",
        type=positive(int),
        default=3,
        help="values to forecast; the true ones are sent as held-out 'actual' (default 3)",
    )
    ap.add_argument("--patterns", default=",".join(PATTERNS), help=f"comma-separated subset of {', '.join(PATTERNS)}")
    ap.add_argument("--json-out", metavar="PATH", help="write the summary (with every accepted job id) to PATH")
    ap.add_argument(
        "--journal",
        metavar="PATH",
        help="append what the API answered to PATH, one JSON line per accepted job (its id and the series sent) "
        "and per refused request: the client's own record, for a verifier to judge the stores against",
    )
    return ap


class Simulator:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.run_id = uuid.uuid4().hex[:12]
        self.patterns = [p.strip() for p in args.patterns.split(",") if p.strip()]
        self.sent = self.accepted = self.failed_jobs = self.batches = self.failed_requests = 0
        self.by_pattern: Counter = Counter()
        self.job_ids: list[str] = []
        self.errors: Counter = Counter()
        self.started = time.monotonic()
        self.stopping = False
        self.tty = sys.stdout.isatty()
        self._last_line = 0.0

    def batch(self) -> list[dict]:
        size = self.rng.randint(self.args.min_batch, self.args.max_batch)
        if self.args.count is not None:
            size = min(size, self.args.count - self.sent)
        out = []
        for _ in range(size):
            pattern = self.rng.choice(self.patterns)
            values, actual = split(pattern, self.args.length, self.args.horizon, seed=self.rng.randrange(2**31))
            out.append(
                {
                    "pattern": pattern,
                    "values": values,
                    "actual": actual,
                    "horizon": self.args.horizon,
                    "metadata": {"source": "data_simulator", "run_id": self.run_id},
                }
            )
        return out

    def submit(self, client: httpx.Client, series: list[dict]) -> None:
        self.batches += 1
        self.sent += len(series)
        try:
            r = client.post("/api/v1/inference", json={"series": series})
        except httpx.HTTPError as exc:
            self.failed_requests += 1
            self.failed_jobs += len(series)
            self.errors[type(exc).__name__] += 1
            return
        if r.status_code == 202:
            body = r.json()
            self.accepted += body["count"]
            self.job_ids += body["job_ids"]
            self.by_pattern.update(s["pattern"] for s in series)
            self.journal(
                [
                    {"event": "accepted", "kind": "inference", "job_id": j, "input": s}
                    for j, s in zip(body["job_ids"], series, strict=True)
                ]
            )
        else:
            self.failed_requests += 1
            self.failed_jobs += len(series)
            self.errors[f"HTTP {r.status_code}: {r.text[:120]}"] += 1
            self.journal([{"event": "refused", "kind": "inference", "status": r.status_code}])

    def journal(self, entries: list[dict]) -> None:
        """``--journal``: what the API answered, as it answered (one line per job or refusal)."""
        if not self.args.journal:
            return
        now = time.time()
        with open(self.args.journal, "a") as fh:
            fh.write("".join(json.dumps({"t": now, "source": "data_simulator", **e}) + "\n" for e in entries))

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_line < (0.2 if self.tty else 5.0):
            return
        self._last_line = now
        elapsed = now - self.started
        line = (
            f"[{elapsed:7.1f}s] batches {self.batches}  sent {self.sent}  accepted {self.accepted}  "
            f"failed {self.failed_jobs}  rate {self.accepted / max(elapsed, 1e-9):.2f} jobs/s"
        )
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", flush=True)

    def done(self) -> bool:
        a = self.args
        return (
            self.stopping
            or (a.count is not None and self.sent >= a.count)
            or (a.duration is not None and time.monotonic() - self.started >= a.duration)
        )

    def run(self) -> int:
        a = self.args
        print(
            f"data simulator → {a.url}  (run {self.run_id}; interval {a.interval}s"
            f"{' ±50%' if a.random_interval else ''}, batch {a.min_batch}-{a.max_batch}; Ctrl-C stops)",
            flush=True,
        )
        with httpx.Client(base_url=a.url, timeout=30) as client:
            while not self.done():
                self.submit(client, self.batch())
                self.progress()
                if self.done():
                    break
                pause = a.interval * (self.rng.uniform(0.5, 1.5) if a.random_interval else 1.0)
                deadline = time.monotonic() + pause
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
                    self.progress()
        self.progress(force=True)
        if self.tty:
            print()
        return self.summary()

    def summary(self) -> int:
        elapsed = time.monotonic() - self.started
        summary = {
            "run_id": self.run_id,
            "url": self.args.url,
            "elapsed_s": round(elapsed, 2),
            "batches": self.batches,
            "sent": self.sent,
            "accepted": self.accepted,
            "failed": self.failed_jobs,
            "failed_requests": self.failed_requests,
            "jobs_per_s": round(self.accepted / max(elapsed, 1e-9), 3),
            "by_pattern": dict(self.by_pattern),
            "errors": dict(self.errors),
            "interrupted": self.stopping,
            "job_ids": self.job_ids,
        }
        print(
            f"summary: {self.sent} jobs in {self.batches} batches over {elapsed:.1f}s — {self.accepted} accepted, "
            f"{self.failed_jobs} failed; by pattern {dict(self.by_pattern)}"
        )
        for err, n in self.errors.most_common(5):
            print(f"  {n} × {err}")
        if self.args.json_out:
            with open(self.args.json_out, "w") as fh:
                json.dump(summary, fh, indent=2)
            print(f"summary written to {self.args.json_out}")
        return 1 if self.failed_jobs else 0


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.max_batch < args.min_batch:
        ap.error("--max-batch must be at least --min-batch")
    unknown = [p for p in args.patterns.split(",") if p.strip() and p.strip() not in PATTERNS]
    if unknown:
        ap.error(f"unknown pattern(s) {', '.join(unknown)}; choose from {', '.join(PATTERNS)}")
    sim = Simulator(args)

    def stop(signum, frame):
        if sim.stopping:  # a second Ctrl-C: leave now
            raise KeyboardInterrupt
        sim.stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        return sim.run()
    except KeyboardInterrupt:
        return sim.summary()


if __name__ == "__main__":
    sys.exit(main())
