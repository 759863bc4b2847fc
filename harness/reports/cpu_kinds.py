"""Where a long run's CPU goes, by kind of process: ``python -m harness.reports.cpu_kinds OUT`` reads every process's
CPU time from ``/proc`` once a second and keeps, in the JSON file OUT (rewritten each time), the seconds each kind
has used since it started: the stack's services, the system's processes, the score jobs' children, the test
processes, the load generator, the static checks, Docker. CI (``nox -s ci``) runs it beside its steps and records each
step's CPU by kind (``reports/ci-steps.jsonl``), so what bounds a step held by the CPU can be read off its record.

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


def run(out: Path, interval: float = 1.0) -> None:
    tick = float(os.sysconf("SC_CLK_TCK"))
    parent = os.getppid()
    # process -> (its kind, CPU seconds counted so far); what ran before the sampler started counts from now only
    seen: dict[tuple[str, str], tuple[str, float]] = dict(_readings(tick))
    totals: dict[str, float] = {}
    started = time.time()
    while os.getppid() == parent:
        for key, (kind_now, cpu) in _readings(tick).items():
            kind, counted = seen.get(key) or (kind_now, 0.0)  # a process keeps the kind it was first seen as
            totals[kind] = totals.get(kind, 0.0) + max(0.0, cpu - counted)
            seen[key] = (kind, cpu)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"since": started, "at": time.time(), "cpu_s": dict(totals)}))
        tmp.replace(out)
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run(Path(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
