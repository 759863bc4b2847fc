"""The Celery transport (the seeds' inference path): jobs as Celery tasks (``verisim.run_jobs``) on the Redis broker's
list named after the deployment's queue (``SQS_QUEUE_NAME``). ``CeleryTransport`` sends and reports
depth; ``serve`` is the worker program (``python -m system.worker --transport celery``, or
``celery -A system.transports.celery worker --pool threads``).

Celery's defaults lose and repeat work; these settings are deliberate (``celery_config``):

* ``task_acks_late``: a task is acknowledged when it returns — after the job's terminal state is committed, its
  events acknowledged by Kafka and its status written to Redis. Celery's default acknowledges on receipt, so a worker
  lost mid-task loses the job for good.
* ``task_reject_on_worker_lost``: a pool process that dies mid-task has its message put back, not acknowledged (the
  default acknowledges it: acks_late alone does not cover a killed child).
* ``worker_prefetch_multiplier = 1``: a worker reserves no more tasks than it has free slots, so a slow or frozen
  worker holds back no one else's jobs.
* ``visibility_timeout`` (``CELERY_VISIBILITY_TIMEOUT``): with the Redis broker a task that was received and never
  acknowledged (its worker was killed) returns to the queue this long after delivery. Celery's default is an hour;
  too short and a job still running is delivered again (harmless here — a job is claimed by id and finishes once —
  but wasted). ``unacked_restore_interval``/``throttle``: look for such tasks every few seconds, not every 100.
* A task carries a request's jobs, as an SQS receive does: its inference jobs together (up to ``TASK_JOBS``), a
  score job alone. The worker runs a task's jobs through the same batch path as the SQS worker (one claim, one Redis
  round trip per state, shared forward passes, one commit), and Celery's own work per task (the broker's list and
  its table of unacknowledged tasks, the task events Flower reads) is spent once per task, not per job. Celery's
  own grouping of tasks (``celery-batches``) is not used: it acknowledges a whole batch as it is received (a worker
  lost mid-batch loses it), keeps no count of a task's deliveries, and needs a prefetch as deep as the batch.
* Tasks running at once in one worker share a batch (``JoinedRuns``): while one batch of inference jobs runs, the
  tasks the worker's other threads receive wait, then run as one batch (up to ``JOINED_JOBS``), each task still
  settled by its own thread with its own jobs' outcomes, and acknowledged only after they are committed. An idle
  worker runs a task at once, alone; a busy one runs 10-20 jobs a batch rather than a request's 5. A task that holds a
  score job runs alone, outside the batches (seconds of work would hold their commit back).
* A request's tasks go to the broker in one round trip (kombu's publish batch: one Redis pipeline), and a failure gives
  up at once: the API has committed the jobs already and flags them for the workers' re-send sweep, as it does when
  SQS is down, so a broker outage never blocks a request.

Settling a task: each of its jobs has its own outcome. Acknowledged = the task returns (acks_late: only now is the
message acknowledged); a job to retry = ``Task.retry`` publishes the task again, with only the jobs to retry and a
countdown (the backoff), before this one is acknowledged; a dead letter = the job's message pushed to the list
``<queue>-dlq`` (Redis has no dead-letter queue of its own). A task's deliveries count for each of its jobs.

A thread pool (like the SQS worker's): the model and the score jobs' forkserver are loaded once per process, before
the worker takes its first task. SIGTERM is Celery's warm shutdown: running jobs finish, reserved tasks go back.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import threading
import time
import uuid
from typing import Any

from system.batching import JoinedRuns
from system.config import Settings
from system.jobs.lifecycle import Action

TASK_NAME = "verisim.run_jobs"
TASK_JOBS = 10  # inference jobs per task at most: an SQS receive's batch
# A worker's inference tasks run through ``JoinedRuns``: one batch at a time (``JOINED_LANES``), and the tasks its other
# threads received meanwhile wait and then run together, up to ``JOINED_JOBS`` jobs (see the module's text)
JOINED_LANES = 1
JOINED_JOBS = 20
RESTARTS = 5  # a worker Celery stopped on an error starts again this many times in a row at most (``serve``)
log = logging.getLogger("system.worker")


def celery_config(settings: Settings) -> dict[str, Any]:
    vt = settings.celery_visibility_timeout
    return {
        "broker_url": settings.celery_broker_url or settings.redis_url,
        "task_default_queue": settings.sqs_queue_name,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_transport_options": {
            "visibility_timeout": vt,
            "unacked_restore_interval": max(1, min(10, vt // 2)),
            "unacked_restore_throttle": 1,
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        "worker_hijack_root_logger": False,  # the system's JSON logs stay as they are
        "worker_send_task_events": True,  # Flower's task list: received, started, succeeded, retried, failed
        # no "sent" event from the publisher: it is a second Redis publish for every task the API sends, inside the
        # request; Flower lists a task from the moment a worker receives it
        "task_send_sent_event": False,
    }


def keep_kombu_conninfo() -> None:
    """Work around a kombu 5 bug (its issues #582, #970): a Redis channel closed after its connection was released —
    the Celery consumer closing the connection the broker dropped, after a failed acknowledgement — looks up the
    released connection's address to put its unacknowledged tasks back, finds None, and raises AttributeError, which
    Celery calls unrecoverable: the worker exits (seen on every Celery worker at once when Redis restarted under
    load). Each channel keeps the address it was opened with and uses it then: the tasks go back on the queue (or,
    with Redis still away, the connection error is one Celery shrugs off and reconnects after). Idempotent."""
    from kombu.transport import redis as kombu_redis

    channel = kombu_redis.Channel
    if getattr(channel, "_verisim_conninfo_kept", False):
        return
    init, connparams = channel.__init__, channel._connparams

    def __init__(self, *args, **kwargs):
        transport = args[0] if args else kwargs.get("connection")
        self._opened_with = getattr(transport, "client", None)
        init(self, *args, **kwargs)

    def _connparams(self, asynchronous=False):
        transport = self.connection
        if transport.client is not None or getattr(self, "_opened_with", None) is None:
            return connparams(self, asynchronous)
        transport.client = self._opened_with
        try:
            return connparams(self, asynchronous)
        finally:
            transport.client = None

    setattr(channel, "__init__", __init__)  # noqa: B010 - a method replaced, as mypy would refuse
    setattr(channel, "_connparams", _connparams)  # noqa: B010
    setattr(channel, "_verisim_conninfo_kept", True)  # noqa: B010


def make_celery(settings: Settings):
    from celery import Celery

    keep_kombu_conninfo()
    app = Celery("verisim", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def open(settings: Settings) -> CeleryTransport:  # noqa: A001 - the registry's name for "the sending side"
    return CeleryTransport(settings)


class CeleryTransport:
    """The sending side, and the dead-letter list of the workers' giving up (not a job, an unknown job, attempts
    exhausted): ``<queue>-dlq``, the counterpart of the SQS dead-letter queue."""

    name = "celery"
    leases_renewed = False  # an unacknowledged task returns only after the whole visibility timeout

    def __init__(self, settings: Settings, app=None):
        self.app = app or make_celery(settings)
        self.queue_name = settings.sqs_queue_name
        self.dlq_name = settings.dlq_name

    def _redis(self):
        import redis

        return redis.Redis.from_url(self.app.conf.broker_url, socket_timeout=5, socket_connect_timeout=5)

    def send(self, messages: list[dict[str, Any]]) -> list[str]:
        """The jobs as tasks (``tasks_of``), all in one Redis round trip: kombu's publish batch (``Producer.batch``:
        the Redis transport buffers each task's LPUSH in a pipeline and runs it once when the batch ends), as the SQS
        side sends a request's jobs in one SendMessageBatch. A batch that fails raises, and the API flags the
        request's jobs for the re-send sweep (a push that did land meanwhile runs once: a job is claimed by id)."""
        tasks = tasks_of(messages)
        with self.app.producer_or_acquire() as producer, producer.batch(max_size=max(1, len(tasks)) * 2):
            for bodies in tasks:
                self.app.send_task(TASK_NAME, args=[bodies], queue=self.queue_name, producer=producer)
        return []

    def dead_letter(self, body: str) -> None:
        with self._redis() as r:
            r.lpush(self.dlq_name, body)

    def depth(self) -> dict[str, int]:
        """Waiting tasks and dead letters of this queue; in flight: every received, unacknowledged task on the
        broker (all queues: the broker keeps one table)."""
        with self._redis() as r:
            pipe = r.pipeline()
            pipe.llen(self.queue_name)
            pipe.hlen("unacked")
            pipe.llen(self.dlq_name)
            visible, in_flight, dlq = pipe.execute()
        return {"visible": visible, "in_flight": in_flight, "delayed": 0, "dlq": dlq}

    def created(self) -> str:
        """A stamp this deployment keeps on the broker beside its queue (``verisim:queue-epoch:<queue>``), made where
        there is none. A Redis list has no creation stamp of its own; a Redis that comes back without its data (no
        persistence, a new instance) has lost this stamp with the queue's tasks, and the one made anew differs, as
        SQS's CreatedTimestamp does for a queue made anew. One round trip; raises where the broker does not answer."""
        key = f"verisim:queue-epoch:{self.queue_name}"
        with self._redis() as r:
            pipe = r.pipeline(transaction=False)
            pipe.set(key, uuid.uuid4().hex, nx=True)
            pipe.get(key)
            _, stamp = pipe.execute()
        return stamp.decode()

    def stranded(self, job_ids: list[str], held_longer_than: float) -> list[str]:
        """Of these queued jobs, those whose task no live worker can be holding: not waiting on the broker's list,
        and either not among the received, unacknowledged tasks at all (a worker killed between taking it from the
        list and recording it), or received longer than ``held_longer_than`` seconds ago (a worker runs a task it
        received at once: a queued job's task held that long was received by a worker that is gone). Asked when a
        worker is found lost: its running jobs its lease names, these it could not."""
        with self._redis() as r:
            pipe = r.pipeline()
            pipe.lrange(self.queue_name, 0, -1)
            pipe.hgetall("unacked")
            pipe.zrange("unacked_index", 0, -1, withscores=True)
            waiting, unacked, index = pipe.execute()
        on_list = {j for m in waiting for j in _job_ids(m)}
        received_at = {tag: at for tag, at in index}
        now = time.time()
        held: dict[str, float] = {}
        for tag, entry in unacked.items():
            try:
                message = json.loads(entry)[0]
            except (ValueError, TypeError, IndexError):
                continue
            for j in _job_ids(message):
                held[j] = float(received_at.get(tag, 0.0))
        return [j for j in job_ids if j not in on_list and (j not in held or now - held[j] > held_longer_than)]


def tasks_of(messages: list[dict[str, Any]]) -> list[list[str]]:
    """Job messages as the bodies of tasks: the inference jobs ``TASK_JOBS`` to a task, each score job alone (it
    runs for seconds; the SQS worker runs one alone too)."""
    inference = [json.dumps(m) for m in messages if m.get("kind") != "score"]
    tasks = [inference[i : i + TASK_JOBS] for i in range(0, len(inference), TASK_JOBS)]
    return tasks + [[json.dumps(m)] for m in messages if m.get("kind") == "score"]


def _has_score_job(bodies: list[str]) -> bool:
    for body in bodies:
        try:
            if json.loads(body).get("kind") == "score":
                return True
        except (ValueError, AttributeError):
            pass
    return False


def _job_ids(message) -> list[str]:
    """The job ids a task carries, from a message as kombu keeps it on Redis (JSON text, or its parsed dict; the
    body base64-encoded JSON: [args, kwargs, embed], args = [the jobs' message bodies])."""
    try:
        doc = json.loads(message) if isinstance(message, (bytes, str)) else message
        body = doc["body"]
        if doc.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        bodies = json.loads(body)[0][0]
        return [str(json.loads(b)["job_id"]) for b in ([bodies] if isinstance(bodies, str) else bodies)]
    except (ValueError, TypeError, KeyError, IndexError):
        return []


# -- the worker program ------------------------------------------------------------------------------------------------
def worker_app(settings: Settings):
    """The Celery app of a worker process: the one task, and the signals that build the job processor before the
    first task and close it at shutdown."""
    from celery import signals

    app = make_celery(settings)
    state: dict[str, Any] = {}

    @signals.worker_init.connect(weak=False)
    def build_processor(**_) -> None:
        from system.logs import setup_logging
        from system.worker.processor import JobProcessor

        setup_logging(settings.log_level)
        concurrency = app.conf.worker_concurrency or settings.worker_concurrency
        state["transport"] = CeleryTransport(settings, app)
        processor = state["processor"] = JobProcessor(settings, concurrency, transports={"celery": state["transport"]})
        state["joined"] = JoinedRuns(
            lambda deliveries: processor.process_many(deliveries, settings.sqs_max_receive_count),
            lanes=JOINED_LANES,
            max_items=JOINED_JOBS,
        )

    @signals.worker_ready.connect(weak=False)
    def ready(**_) -> None:
        processor = state["processor"]
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

    @signals.worker_shutdown.connect(weak=False)
    def stop(**_) -> None:
        processor = state.get("processor")
        if processor is not None:
            processor.stop_event.set()
            log.info("worker stopped", extra={"processed": processor.processed})
            processor.close()

    # max_retries=None: a retry's limit is the job's own (its attempts, SQS_MAX_RECEIVE_COUNT, then the dead letters),
    # never Celery's default of 3, past which a retry raises and the job would be stranded
    @app.task(name=TASK_NAME, bind=True, max_retries=None)
    def run_jobs(self, bodies) -> None:
        from celery.exceptions import Reject

        bodies = [bodies] if isinstance(bodies, str) else [b if isinstance(b, str) else json.dumps(b) for b in bodies]
        processor, receives = state["processor"], self.request.retries + 1
        max_receives = settings.sqs_max_receive_count
        deliveries = [(b, receives) for b in bodies]
        try:
            if _has_score_job(bodies):  # seconds of work: its own thread, never in an inference batch's way
                outcomes = processor.process_many(deliveries, max_receives)
            else:
                outcomes = state["joined"].run(deliveries)
        except Exception as exc:
            # a dependency failed around the jobs (Postgres out of reach while claiming or committing): the task comes
            # back after the backoff, as an SQS message left undeleted does, and a job claimed already is claimed
            # again. A task that raises would be acknowledged (acks_late acknowledges failures too): its jobs would
            # wait for the stale-job sweep, minutes away
            log.warning("jobs not settled: their task comes back", extra={"error": str(exc), "receives": receives})
            outcomes = [processor.redeliver_later(receives, max_receives)] * len(bodies)
        again = [(b, o.delay) for b, o in zip(bodies, outcomes, strict=True) if o.action == Action.RETRY]
        retry = None
        if again:
            try:  # published now, raised once the dead letters are out: Celery then acknowledges this delivery
                retry = self.retry(args=[[b for b, _ in again]], countdown=max(d for _, d in again), throw=False)
            except Reject as exc:
                # the broker refused the retry's message: put this one back on the queue (Celery's own rejection
                # drops it), or, with the broker away, leave it to come back after the visibility timeout
                raise Reject(exc.reason, requeue=True) from exc
        for b, o in zip(bodies, outcomes, strict=True):
            if o.action == Action.DEAD_LETTER:
                state["transport"].dead_letter(b)
        if retry is not None:
            raise retry

    return app


def serve(settings: Settings, concurrency: int | None, grace: float, name: str | None = None) -> int:
    """One Celery worker process (a thread pool of ``concurrency``) until SIGTERM (Celery's warm shutdown; ``grace``
    is Celery's to keep: running tasks finish).

    A worker that Celery stops on an "unrecoverable error" starts again in the same process (``os.execv``: the same
    pid and log, a lease of its own): kombu's Redis transport has failed so (``keep_kombu_conninfo``), and Celery
    then exits a worker that would otherwise have reconnected. The lease of the worker it was lapses, so its jobs and
    unacknowledged tasks come back as a lost worker's do.
    At most ``RESTARTS`` times in a row (a minute's run begins the count again), a second apart."""
    concurrency = concurrency or settings.worker_concurrency
    app = worker_app(settings)
    app.conf.worker_concurrency = concurrency
    from celery import signals

    began, stopping, workers = time.monotonic(), threading.Event(), []
    signals.worker_shutting_down.connect(lambda **_: stopping.set(), weak=False)  # SIGTERM: a stop asked for
    signals.worker_init.connect(lambda sender=None, **_: workers.append(sender), weak=False)  # its exit code
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
            name or f"verisim-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            settings.log_level,
            "--task-events",
        ]
    )
    code = getattr(workers[0], "exitcode", None) if workers else 1
    code = code if isinstance(code, int) else 0
    # restarts in a row: a worker that ran for a minute since its last start begins the count again
    restarts = int(os.environ.get("CELERY_WORKER_RESTARTS", "0")) if time.monotonic() - began < 60 else 0
    if code and not stopping.is_set() and restarts < RESTARTS:
        log.error("the Celery worker stopped on an error; starting it again", extra={"exit_code": code})
        time.sleep(1.0)
        os.environ["CELERY_WORKER_RESTARTS"] = str(restarts + 1)
        argv = [sys.executable, "-m", "system.worker", "--transport", "celery", "--concurrency", str(concurrency)]
        argv += ["--grace", str(grace)] + (["--name", name] if name else [])
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, argv)
    return code


def __getattr__(name: str):
    """``celery -A system.transports.celery worker``: the worker app, made from the environment's settings when
    Celery asks for it."""
    if name in ("app", "celery"):
        from system.config import get_settings

        globals()[name] = app = worker_app(get_settings())
        return app
    raise AttributeError(name)
