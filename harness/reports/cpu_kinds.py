"""Where a long run's CPU goes, by kind of process: ``python -m harness.reports.cpu_kinds OUT`` reads every process's
CPU time from ``/proc`` once a second and keeps, in the JSON file OUT (rewritten each time), the seconds each kind
has used since it started: the stack's services, the system's processes, the score jobs' children, the test
processes, the load generator, the static checks, Docker. CI (``nox -s ci``) runs it beside its steps and records
each step's CPU by kind (``reports/ci-steps.jsonl``), so what bounds a step held by the CPU can be read off its record.
With ``--timeline OUT`` it appends each reading's CPU by kind to OUT as a JSON line instead: a chaos-under-load run
keeps one, to show where the CPU went in each phase.

A process already running when the sampler starts is counted from then on; one started later from its start (its CPU
until the first reading included). What a process uses in the second before it ends is lost, and a process that starts and ends between two readings is not seen. It stops when its
parent does (or on SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

SCORE_PROCESS_NAME = "verisim-score"  # system.pipelines.budget.PROCESS_NAME (the oracle's side keeps its own copy)

# the first pattern found in a process's command line names its kind (order matters: the more specific first)
KINDS: list[tuple[str, str]] = [
    # the worker's forkserver for score jobs, where multiprocessing execs it (its preload names the score reader); one
    # the worker forked from itself, and every job child, is told by its name (SCORE_PROCESS_NAME), not its command line
    ("'system.pipelines.score_read'", "score job children"),
    ("forkserver import main", "system: api, workers (forked)"),  # the harness's template and what it forks
    ("system.worker", "system: workers"),
    ("system.api", "system: api"),
    ("system.mock_openai", "mock openai"),
    ("localstack", "localstack"),
    ("postgres", "postgres"),
    ("redis-server", "redis"),
    ("tansu", "kafka"),
    ("prometheus", "prometheus"),
    ("locust", "locust"),
    ("exec(eval(sys.stdin.readline()))", "pytest (xdist workers)"),
    ("pytest", "pytest"),
    ("mypy", "static checks"),
    ("ruff", "static checks"),
    ("dockerd", "docker"),
    ("containerd", "docker"),
    ("stress-ng", "stress-ng (faults)"),
    ("chromium", "chromium"),
    ("nox", "nox"),
]


def kind_of(cmdline: str, comm: str = "", ppid: str = "") -> str:
    """The kind of a process by its command line; one without (a kernel thread, or a process that has ended and not
    yet been reaped) by its name (``comm``) and parent."""
    if comm == SCORE_PROCESS_NAME:
        return "score job children"
    if not cmdline:
        return "kernel threads" if ppid in ("0", "2") else f"other: {comm}"
    for pattern, kind in KINDS:
        if pattern in cmdline:
            return kind
    return "other: " + os.path.basename(cmdline.split(" ", 1)[0])[:24]


def _readings(tick: float) -> dict[tuple[str, str], tuple[str, float]]:
    """(pid, start time) -> (the process's kind, its CPU seconds so far), for every process now."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
            fields = tail.split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):
            continue
        kind = kind_of(cmdline, head.split("(", 1)[-1], fields[1])
        out[(pid, fields[19])] = (kind, (int(fields[11]) + int(fields[12])) / tick)
    return out


def _deltas(interval: float) -> Iterator[tuple[float, dict[str, float]]]:
    """Every ``interval`` while the parent lives: (when, CPU seconds by kind since the previous reading)."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    parent = os.getppid()
    # process -> (its kind, CPU seconds counted so far); what ran before the sampler started counts from now only
    seen: dict[tuple[str, str], tuple[str, float]] = dict(_readings(tick))
    while os.getppid() == parent:
        time.sleep(interval)
        used: dict[str, float] = {}
        for key, (kind_now, cpu) in _readings(tick).items():
            kind, counted = seen.get(key) or (kind_now, 0.0)  # a process keeps the kind it was first seen as
            used[kind] = used.get(kind, 0.0) + max(0.0, cpu - counted)
            seen[key] = (kind, cpu)
        yield time.time(), used


def run(out: Path, interval: float = 1.0) -> None:
    """OUT holds the totals since the start, rewritten each reading."""
    totals: dict[str, float] = {}
    started = time.time()
    for at, used in _deltas(interval):
        for kind, cpu in used.items():
            totals[kind] = totals.get(kind, 0.0) + cpu
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"since": started, "at": at, "cpu_s": dict(totals)}))
        tmp.replace(out)


def timeline(out: Path, interval: float = 1.0) -> None:
    """OUT gets one JSON line a reading: {"t": when, "cpu_s": {kind: CPU seconds since the previous reading}}."""
    with out.open("a") as f:
        for at, used in _deltas(interval):
            f.write(json.dumps({"t": round(at, 2), "cpu_s": {k: round(v, 2) for k, v in used.items() if v}}) + "\n")
            f.flush()


def per_second(lines: list[dict], start: float, end: float, top: int = 6) -> dict[str, float]:
    """CPU seconds per second by kind over [start, end) of a ``timeline`` (1.0: one core busy), the ``top`` largest.
    A reading covers the second before it: it counts where the middle of that second falls."""
    inside = [r for r in lines if start <= r["t"] - 0.5 < end]
    if not inside:
        return {}
    span = max(1.0, end - start)
    used: dict[str, float] = {}
    for r in inside:
        for kind, cpu in r["cpu_s"].items():
            used[kind] = used.get(kind, 0.0) + cpu
    return {k: round(v / span, 2) for k, v in sorted(used.items(), key=lambda kv: -kv[1])[:top]}


def read_timeline(path: Path) -> list[dict]:
    """A ``timeline`` file's readings ([] when there is none)."""
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    as_timeline = args[:1] == ["--timeline"]
    args = args[1:] if as_timeline else args
    if len(args) != 1 or args[0].startswith("-"):
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    (timeline if as_timeline else run)(Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
