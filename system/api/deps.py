"""Connections the API holds for its lifetime, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from system.config import Settings
from system.storage.aws import Artifacts
from system.storage.db import make_pool, migrate
from system.storage.jobs import JobStore
from system.storage.queues import JobRouter
from system.storage.status_cache import StatusCache


@dataclass
class Deps:
    settings: Settings
    store: JobStore
    cache: StatusCache
    queue: JobRouter  # each kind of job to its transport (SQS or Celery)
    artifacts: Artifacts

    @classmethod
    def connect(cls, settings: Settings) -> Deps:
        migrate(settings.dsn)
        pool = make_pool(settings.dsn, settings.db_pool_size)
        store = JobStore(
            pool,
            {
                "inference": settings.kafka_topic_inference,
                "score": settings.kafka_topic_scores,
                "events": settings.kafka_topic_job_events,
            },
            queue=settings.sqs_queue_name,
        )
        queue = JobRouter(settings)
        store.note_queue_epoch(queue.created())  # the queue as it is now: a recreated one is noticed against this
        return cls(settings, store, StatusCache(settings.redis_url), queue, Artifacts(settings))

    def close(self) -> None:
        self.store.pool.close()
        self.cache.client.close()
