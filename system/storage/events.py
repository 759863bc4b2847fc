"""The Kafka event stream's topics: create them, and read which events they hold (by ``event_id``). The outbox
(``system.storage.outbox``) publishes to them."""

from __future__ import annotations

import json
import logging
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)


def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 3, admin: AdminClient | None = None) -> None:
    admin = admin or AdminClient({"bootstrap.servers": bootstrap})
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


def event_ids_in(bootstrap: str, topics: list[str], timeout_s: float = 60) -> set[int]:
    """The outbox ids of every event the broker holds now in ``topics``, read from the start to the end of each
    partition. Raises rather than return part of them (a partial read would make events look lost)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "verisim-log-restore",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        existing = consumer.list_topics(timeout=10).topics
        ends: dict[tuple[str, int], int] = {}
        assign = []
        for topic in topics:
            for p in existing[topic].partitions if topic in existing else {}:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                if high > low:
                    ends[(topic, p)] = high
                    assign.append(TopicPartition(topic, p, low))
        ids: set[int] = set()
        if not assign:
            return ids
        consumer.assign(assign)
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read only part of {topics} within {timeout_s:.0f}s; {len(ends)} partition(s) left")
            for m in consumer.consume(1000, 0.5):
                if m.error():
                    continue
                try:
                    ids.add(int(json.loads(m.value())["event_id"]))
                except (ValueError, KeyError, TypeError):
                    pass  # not an outbox event
                key = (m.topic(), m.partition())
                if key in ends and m.offset() + 1 >= ends[key]:
                    del ends[key]
        return ids
    finally:
        consumer.close()
