"""The connections a process of the system holds for its lifetime, built one way for the API and the worker:
migrate Postgres → a pool → the job store and its read views → the status cache → the transports (each kind of job
to its own, ``system.transports``) → the outbox (Kafka) → the artifact store."""

from __future__ import annotations

from dataclasses import dataclass

from system.config import Settings
from system.storage.aws import Artifacts
from system.storage.db import make_pool, migrate
from system.storage.jobs import JobStore
from system.storage.outbox import Outbox
from system.storage.status_cache import StatusCache
from system.storage.views import JobViews
from system.transports.base import Transport
from system.transports.router import JobRouter


@dataclass
class Connections:
    settings: Settings
    store: JobStore
    views: JobViews  # the dashboard's and the metrics' reads
    cache: StatusCache
    router: JobRouter  # each kind of job to its transport
    outbox: Outbox
    artifacts: Artifacts

    @classmethod
    def open(cls, settings: Settings, pool_size: int, transports: dict[str, Transport] | None = None) -> Connections:
        """``transports``: any the caller opened already (a worker program's own); the others the settings name are
        opened here."""
        migrate(settings.dsn)
        pool = make_pool(settings.dsn, pool_size)
        store = JobStore(pool, settings.kafka_topics, queue=settings.sqs_queue_name)
        router = JobRouter(settings, transports)
        store.note_queue_epoch(router.created())  # the queue as it is now: a recreated one is noticed against this
        outbox = Outbox(settings.kafka_bootstrap_servers, pool, store.queue, list(settings.kafka_topics.values()))
        return cls(
            settings, store, JobViews(pool), StatusCache(settings.redis_url), router, outbox, Artifacts(settings)
        )

    def close(self) -> None:
        self.outbox.close()
        self.store.pool.close()
        self.cache.client.close()
