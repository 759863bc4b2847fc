"""Kafka: publish the outbox (idempotent producer, key = job id) and mark what the broker acknowledged."""

from __future__ import annotations

import json
import logging
import threading
import time

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from system.storage.jobs import JobStore

log = logging.getLogger(__name__)


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
    if not new:
        return
    for topic, fut in admin.create_topics(new).items():
        try:
            fut.result(timeout=10)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
            log.debug("topic %s already exists", topic)


class OutboxPublisher:
    """Publishes outbox rows. When Kafka fails, a breaker opens for ``cool_down`` seconds: job threads stop waiting
    on the broker (their events stay in the outbox) and only the periodic ``sweep`` probes it, re-creating the topics
    a restarted in-memory broker lost."""

    def __init__(self, bootstrap: str, store: JobStore, topics: list[str] | None = None, timeout_s: float = 10,
                 cool_down: float = 30):
        self.store = store
        self.bootstrap = bootstrap
        self.topics = topics or []
        self.timeout_s = timeout_s
        self.cool_down = cool_down
        self.open_until = 0.0
        self.producer = self._new_producer()
        self._lock = threading.Lock()

    def _new_producer(self) -> Producer:
        return Producer({
            "bootstrap.servers": self.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(self.timeout_s * 1000),
        })

    def publish(self, rows) -> int:
        """Produce ``rows`` (outbox rows), wait for the broker, mark the acknowledged ones published."""
        if not rows:
            return 0
        acked: list[int] = []
        failed: list[str] = []

        def on_delivery(err, msg, row_id):
            if err is None:
                acked.append(row_id)
            else:
                failed.append(str(err))

        rows = sorted(rows, key=lambda r: r["id"])
        producer = self.producer  # thread-safe; each caller waits for its own messages only
        for row in rows:
            payload = {**row["payload"], "event_id": row["id"]}
            producer.produce(row["topic"], key=row["key"], value=json.dumps(payload, default=str),
                             on_delivery=lambda err, msg, rid=row["id"]: on_delivery(err, msg, rid))
        deadline = time.monotonic() + self.timeout_s + 2
        while len(acked) + len(failed) < len(rows) and time.monotonic() < deadline:
            producer.poll(0.05)
        self.store.mark_published(acked)
        if len(acked) < len(rows):
            self.store.release_claims([r["id"] for r in rows if r["id"] not in set(acked)])
            self.open_until = time.monotonic() + self.cool_down
            with self._lock:  # a broker that came back empty does not know this producer's id: start afresh
                if self.producer is producer:
                    producer.purge()
                    self.producer = self._new_producer()
            log.warning("kafka refused %d event(s); they stay in the outbox: %s", len(rows) - len(acked),
                        failed[0] if failed else "no delivery report")
        return len(acked)

    def publish_job(self, job_id) -> int:
        """Inline, right after a state change; skipped while the breaker is open (the sweep delivers later)."""
        if time.monotonic() < self.open_until:
            return 0
        return self.publish(self.store.claim_unpublished(job_id))

    def sweep(self, older_than_seconds: float = 10) -> int:
        """Events a dead worker committed but never published, or that Kafka refused: also the breaker's probe."""
        rows = self.store.claim_unpublished(older_than_seconds=older_than_seconds)
        if rows and self.topics and time.monotonic() < self.open_until + 60:
            try:  # a restarted in-memory broker has forgotten its topics
                ensure_topics(self.bootstrap, self.topics)
            except Exception as exc:
                self.store.release_claims([r["id"] for r in rows])
                log.warning("kafka still unavailable: %s", exc)
                return 0
        delivered = self.publish(rows)
        if rows and delivered == len(rows):
            self.open_until = 0.0
        return delivered

    def close(self) -> None:
        self.producer.flush(10)
