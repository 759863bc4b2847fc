"""Read back what the system published to Kafka, without a consumer group (fast on tansu: no group join)."""

from __future__ import annotations

import json
import time
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


class TopicReadIncomplete(TimeoutError):
    """The read hit its deadline before every partition reached its end: what was read is in ``partial``."""

    def __init__(self, topic: str, partial: list[dict], timeout: float, partitions_done: int, partitions: int):
        super().__init__(
            f"read of {topic!r} hit its {timeout:g}s deadline after {len(partial)} message(s), "
            f"{partitions_done}/{partitions} partition(s) at their end: the read is incomplete"
        )
        self.topic, self.partial = topic, partial


def read_topic(bootstrap: str, topic: str, timeout: float = 30) -> list[dict]:
    """Every message on ``topic`` from the beginning: ``[{"key", "value" (parsed JSON), "partition", "offset"}]``,
    as far as each partition's end when the read reached it (the broker's end-of-partition event, not a quiet spell:
    a read ends as soon as the last partition reports its end).

    Raises ``TopicReadIncomplete`` when ``timeout`` passes before every partition reached its end: a cut-short read
    could hide a duplicate or a missing event, so it is never returned as if it were whole."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "verisim-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # an empty partition's fetch is answered at once, not held for new messages (librdkafka's 500 ms): the
            # end of each partition is known in milliseconds
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            return []
        parts = list(md.topics[topic].partitions)
        if not parts:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[dict] = []
        eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.05)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == msg.error()._PARTITION_EOF:
                    eof.add(msg.partition())
                    if len(eof) == len(parts):
                        break
                    continue
                raise RuntimeError(msg.error())
            eof.discard(msg.partition())
            out.append(
                {
                    "key": msg.key().decode() if msg.key() else None,
                    "value": json.loads(msg.value()),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "timestamp": msg.timestamp()[1],  # ms, the producer's create time
                }
            )
        else:
            if len(eof) < len(parts):
                raise TopicReadIncomplete(topic, out, timeout, len(eof), len(parts))
        return out
    finally:
        consumer.close()


def by_key(messages: list[dict]) -> dict[str, list[dict]]:
    """Each key's values in the order the log holds them (one key, one partition: offset order), each carrying its
    place in the log (``_partition``, ``_offset``) and the producer's timestamp (``_ts``, ms)."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for m in messages:
        value = m["value"] if isinstance(m["value"], dict) else {"value": m["value"]}
        grouped[m["key"]].append(
            {**value, "_partition": m.get("partition"), "_offset": m.get("offset"), "_ts": m.get("timestamp")}
        )
    return grouped
