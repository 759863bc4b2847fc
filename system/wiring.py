"""The connections a process of the system holds for its lifetime, built one way for the API and the worker:
migrate Postgres → a pool → the job store → the status cache → the queues (each kind of job to its transport) → the
artifact store."""

from __future__ import annotations

from dataclasses import dataclass

from system.config import Settings
from system.storage.aws import Artifacts, JobQueue
from system.storage.db import make_pool, migrate
from system.storage.jobs import JobStore
from system.storage.queues import CeleryQueue, JobRouter
from system.storage.status_cache import StatusCache


@dataclass
class Connections:
    settings: Settings
    store: JobStore
    cache: StatusCache
    queue: JobRouter  # each kind of job to its transport (SQS or Celery)
    artifacts: Artifacts

    @classmethod
    def open(
        cls, settings: Settings, pool_size: int, sqs: JobQueue | None = None, celery: CeleryQueue | None = None
    ) -> Connections:
        migrate(settings.dsn)
        store = JobStore(
            make_pool(settings.dsn, pool_size),
            settings.kafka_topics,
            queue=settings.sqs_queue_name,
        )
        queue = JobRouter(settings, sqs=sqs, celery=celery)
        store.note_queue_epoch(queue.created())  # the queue as it is now: a recreated one is noticed against this
        return cls(settings, store, StatusCache(settings.redis_url), queue, Artifacts(settings))

    def close(self) -> None:
        self.store.pool.close()
        self.cache.client.close()
