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
    ap.add_argument("--processes", type=int, default=1, help="worker processes to run (default 1)")
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
    if args.processes < 1:
        ap.error("--processes must be at least 1")
    if args.processes > 1:
        return supervise(args)

    from system.config import get_settings
    from system.logs import setup_logging
    from system.transports import module

    settings = get_settings()
    setup_logging(settings.log_level)
    module(args.transport).serve(settings, args.concurrency, args.grace, args.name)
    sys.stdout.flush()
    sys.stderr.flush()
    _save_coverage()
    os._exit(0)  # job threads that outlived the grace period must not hold the process open


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
