"""Kafka: publish the outbox (idempotent producer, key = job id) and mark what the broker acknowledged."""

from __future__ import annotations

import json
import logging
import threading

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
    def __init__(self, bootstrap: str, store: JobStore):
        self.store = store
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 30000,
        })
        self._lock = threading.Lock()

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
        with self._lock:
            for row in rows:
                payload = {**row["payload"], "event_id": row["id"]}
                self.producer.produce(row["topic"], key=row["key"], value=json.dumps(payload, default=str),
                                      on_delivery=lambda err, msg, rid=row["id"]: on_delivery(err, msg, rid))
            self.producer.flush(30)
        self.store.mark_published(acked)
        if failed:
            self.store.release_claims([r["id"] for r in rows if r["id"] not in set(acked)])
            log.warning("kafka refused %d event(s): %s", len(failed), failed[0])
        return len(acked)

    def publish_job(self, job_id) -> int:
        return self.publish(self.store.claim_unpublished(job_id))

    def sweep(self, older_than_seconds: float = 10) -> int:
        """Events a dead worker committed but never published (or whose publisher's lease ran out)."""
        return self.publish(self.store.claim_unpublished(older_than_seconds=older_than_seconds))

    def close(self) -> None:
        self.producer.flush(10)
