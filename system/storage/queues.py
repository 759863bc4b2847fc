"""The job queues: SQS (``system.storage.aws.JobQueue``) and Celery over Redis, and the router that sends each kind
of job to the transport it is set to (``INFERENCE_TRANSPORT``, ``SCORE_TRANSPORT``: ``sqs`` or ``celery``).

Both transports carry the same message (``system.storage.jobs.job_message``) and name their queue after the
deployment (``SQS_QUEUE_NAME``); the job store, the outbox and the status cache do not care which one ran a job.

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
* Publishing retries a little, then gives up: the API has committed the job already and flags it for the workers'
  re-send sweep, as it does when SQS is down, so a broker outage never blocks a request.
"""

from __future__ import annotations

import json
from typing import Any

from system.config import Settings
from system.storage.aws import JobQueue

TASK_NAME = "verisim.run_job"


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
        "worker_send_task_events": True,  # Flower's task list
        "task_send_sent_event": True,
    }


def make_celery(settings: Settings):
    from celery import Celery

    app = Celery("verisim", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


class CeleryQueue:
    """Jobs as Celery tasks (``verisim.run_job``, task id = job id) on the Redis broker's list named after the
    deployment's queue. Messages the workers give up on (not a job, an unknown job, attempts exhausted) are pushed to
    the list ``<queue>-dlq``, the counterpart of the SQS dead-letter queue."""

    def __init__(self, settings: Settings, app=None):
        self.app = app or make_celery(settings)
        self.name = settings.sqs_queue_name
        self.dlq_name = settings.dlq_name

    def _redis(self):
        import redis

        return redis.Redis.from_url(self.app.conf.broker_url, socket_timeout=5, socket_connect_timeout=5)

    def send(self, messages: list[dict[str, Any]]) -> list[str]:
        """Publish each message as a task; returns the job ids that could not be published (raises when the broker
        refuses the first one: the caller defers them all)."""
        refused: list[str] = []
        with self.app.producer_or_acquire() as producer:
            for i, m in enumerate(messages):
                try:
                    self.app.send_task(
                        TASK_NAME, args=[json.dumps(m)], queue=self.name, task_id=str(m["job_id"]), producer=producer
                    )
                except Exception:
                    if i == 0:
                        raise
                    refused.append(str(m["job_id"]))
        return refused

    def dead_letter(self, body: str) -> None:
        with self._redis() as r:
            r.lpush(self.dlq_name, body)

    def depth(self) -> dict[str, int]:
        """Waiting tasks and dead letters of this queue; in flight: every received, unacknowledged task on the
        broker (all queues: the broker keeps one table)."""
        with self._redis() as r:
            pipe = r.pipeline()
            pipe.llen(self.name)
            pipe.hlen("unacked")
            pipe.llen(self.dlq_name)
            visible, in_flight, dlq = pipe.execute()
        return {"visible": visible, "in_flight": in_flight, "delayed": 0, "dlq": dlq}


class JobRouter:
    """Sends each job to its kind's transport; the SQS queue is always there (it also marks the deployment's queue
    epoch, see ``JobStore.note_queue_epoch``)."""

    def __init__(self, settings: Settings, sqs: JobQueue | None = None, celery: CeleryQueue | None = None):
        self.kinds = {"inference": settings.inference_transport, "score": settings.score_transport}
        self.sqs = sqs or JobQueue(settings)
        self.celery = celery or (CeleryQueue(settings) if "celery" in self.kinds.values() else None)

    def transport(self, kind: str) -> str:
        return self.kinds.get(kind, "sqs")

    def send(self, messages: list[dict[str, Any]]) -> list[str]:
        refused: list[str] = []
        for name, queue in (("sqs", self.sqs), ("celery", self.celery)):
            mine = [m for m in messages if self.transport(m["kind"]) == name]
            if mine:
                refused += queue.send(mine)
        return refused

    def created(self) -> str:
        return self.sqs.created()

    def depth(self) -> dict[str, int]:
        depth = self.sqs.depth()
        if self.celery is not None:
            for k, v in self.celery.depth().items():
                depth[k] = depth.get(k, 0) + v
        return depth
