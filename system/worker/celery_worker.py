"""The Celery transport's worker: ``python -m system.worker.celery_worker [--concurrency C]`` (or
``celery -A system.worker.celery_worker worker --pool threads``). Settings come from the environment, as for
``python -m system.worker``.

One task, ``verisim.run_job``, runs a job exactly as the SQS worker does (``system.worker.runner.JobProcessor``:
the same store, outbox, cache and pipelines, idempotent by job id); only receiving and acknowledging differ. Why the
Celery settings are what they are: ``system.storage.queues``. Per delivery:

* ack: the task returns (acks_late: only now is the message acknowledged);
* retry: ``Task.retry`` publishes the message again with a countdown (the backoff) before this one is acknowledged;
* dead letter: pushed to the ``<queue>-dlq`` list (Redis has no dead-letter queue of its own), then acknowledged.

A thread pool (like the SQS worker's): the model and the score jobs' forkserver are loaded once per process, before
the worker takes its first task. SIGTERM is Celery's warm shutdown: running jobs finish, reserved tasks go back.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from celery import signals

from system.config import get_settings
from system.logs import setup_logging
from system.storage.queues import TASK_NAME, CeleryQueue, make_celery

log = logging.getLogger("system.worker")
settings = get_settings()
app = make_celery(settings)
_state: dict = {}  # "processor": the JobProcessor of this worker process, built before the first task


@signals.worker_init.connect
def _build_processor(**_) -> None:
    from system.worker.runner import JobProcessor

    setup_logging(settings.log_level)
    concurrency = app.conf.worker_concurrency or settings.worker_concurrency
    _state["queue"] = CeleryQueue(settings, app)
    _state["processor"] = JobProcessor(settings, concurrency, celery=_state["queue"])


@signals.worker_ready.connect
def _ready(**_) -> None:
    processor = _state["processor"]
    threading.Thread(target=processor.housekeeping, name="housekeeping", daemon=True).start()
    log.info(
        "worker ready",
        extra={
            "queue": settings.sqs_queue_name,
            "transport": "celery",
            "concurrency": processor.concurrency,
            "max_receives": settings.sqs_max_receive_count,
        },
    )


@signals.worker_shutdown.connect
def _stop(**_) -> None:
    processor = _state.get("processor")
    if processor is not None:
        processor.stop_event.set()
        log.info("worker stopped", extra={"processed": processor.processed})
        processor.close()


@app.task(name=TASK_NAME, bind=True)
def run_job(self, body: str) -> None:
    outcome = _state["processor"].process(body, self.request.retries + 1, settings.sqs_max_receive_count)
    if outcome.action == "retry":
        raise self.retry(countdown=outcome.delay, max_retries=None)
    if outcome.action == "dead_letter":
        _state["queue"].dead_letter(body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m system.worker.celery_worker",
        description="Verisim worker on the Celery transport: takes the jobs of the kinds set to celery "
        "(INFERENCE_TRANSPORT, SCORE_TRANSPORT) from the Redis broker (CELERY_BROKER_URL, default REDIS_URL), queue "
        "SQS_QUEUE_NAME. Other settings as for python -m system.worker.",
    )
    ap.add_argument(
        "--concurrency", type=int, default=None, help="jobs this process runs at once (default WORKER_CONCURRENCY, 4)"
    )
    ap.add_argument("--name", default=None, help="the worker's node name (default verisim-<pid>@<host>)")
    args = ap.parse_args(argv)
    concurrency = args.concurrency or settings.worker_concurrency
    app.conf.worker_concurrency = concurrency
    app.worker_main(
        [
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--queues",
            settings.sqs_queue_name,
            "--hostname",
            args.name or f"verisim-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            settings.log_level,
            "--task-events",
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
