"""``python -m system.worker [--transport T] [--processes N] [--concurrency C] [--grace S]`` — settings from the
environment. The transport's own module (``system.transports``) runs the process: receiving, settling, stopping."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from system.transports import REGISTRY


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m system.worker",
        description="Verisim worker: takes score and inference jobs from a transport's queue (SQS_QUEUE_NAME: on "
        "SQS at AWS_ENDPOINT_URL, or on Celery's Redis broker at CELERY_BROKER_URL, default REDIS_URL) and runs them. "
        "Settings come from the environment or .env (POSTGRES_*, REDIS_URL, KAFKA_BOOTSTRAP_SERVERS, "
        "S3_BUCKET_NAME, OPENAI_API_BASE, …).",
    )
    ap.add_argument(
        "--transport", choices=sorted(REGISTRY), default="sqs", help="the queue to take jobs from (default sqs)"
    )
    ap.add_argument(
        "--processes",
        type=_processes,
        default=1,
        help="worker processes to run: a number, or 'auto' for one per usable core (default 1); never more than the "
        "cores this process may use (its CPU affinity and cgroup quota): more would only take turns on them",
    )
    ap.add_argument(
        "--concurrency", type=int, default=None, help="jobs each process runs at once (default WORKER_CONCURRENCY, 4)"
    )
    ap.add_argument(
        "--grace",
        type=float,
        default=20.0,
        help="seconds to let in-flight jobs finish on SIGTERM before releasing them (default 20)",
    )
    ap.add_argument("--name", default=None, help="the worker's node name where the transport has them (Celery)")
    args = ap.parse_args(argv)
    cores = usable_cores()
    asked, args.processes = args.processes, min(args.processes or cores, cores)
    if asked and asked > cores:
        print(
            f"system.worker: {asked} processes asked, {cores} core(s) usable: running {cores} (each process runs its "
            "jobs' model passes on the CPU; more processes than cores only take turns on them)",
            file=sys.stderr,
        )
    if args.processes > 1:
        return supervise(args)

    from system.config import get_settings
    from system.logs import setup_logging
    from system.transports import module

    settings = get_settings()
    if settings.score_transport == args.transport:
        from system.pipelines import budget

        budget.start_server()  # before the first thread: the score jobs' forkserver forked from this process
    setup_logging(settings.log_level)
    code = module(args.transport).serve(settings, args.concurrency, args.grace, args.name)
    sys.stdout.flush()
    sys.stderr.flush()
    _save_coverage()
    os._exit(code or 0)  # job threads that outlived the grace period must not hold the process open


def _processes(text: str) -> int:
    """``--processes``: a count >= 1, or ``auto`` (0 here: one per usable core)."""
    if text == "auto":
        return 0
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes or 'auto'") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1 (or 'auto')")
    return n


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, less what a cgroup CPU quota allows (v2 ``cpu.max``,
    v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``), at least 1."""
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, int(quota))) if quota else max(1, cores)


def _cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    try:
        fields = open(f"{root}/cpu.max").read().split()
        return None if fields[0] == "max" else int(fields[0]) / int(fields[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(open(f"{root}/cpu/cpu.cfs_quota_us").read())
        period = int(open(f"{root}/cpu/cpu.cfs_period_us").read())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def _save_coverage() -> None:
    """When coverage measures this process (``nox -s coverage``), save its data now: ``os._exit`` skips the atexit
    hook that would. Nothing otherwise."""
    coverage = sys.modules.get("coverage")
    current = coverage.Coverage.current() if coverage else None
    if current is not None:
        current.stop()
        current.save()


def supervise(args) -> int:
    """N single-process workers; SIGTERM/SIGINT are passed on, and the supervisor waits for all of them."""
    cmd = [sys.executable, "-m", "system.worker", "--transport", args.transport, "--processes", "1"]
    cmd += ["--grace", str(args.grace)]
    if args.concurrency:
        cmd += ["--concurrency", str(args.concurrency)]
    children = [subprocess.Popen(cmd) for _ in range(args.processes)]

    def forward(signum, frame):
        for c in children:
            if c.poll() is None:
                c.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while any(c.poll() is None for c in children):
        time.sleep(0.2)
    return max(c.returncode or 0 for c in children)


if __name__ == "__main__":
    sys.exit(main())
