"""Kafka: publish the outbox (idempotent producer, key = job id) and mark what the broker acknowledged.

The Kafka log is kept across a broker that loses it. Production Kafka keeps its log on disk; a broker that keeps it in
memory (the local tansu) forgets every topic when it restarts. Postgres keeps every event in the outbox, so the
publishers restore the log: each deployment keeps a marker topic on the broker (``verisim.log-epoch.<queue>``); when
it is gone, the broker has lost its log, and one worker (an advisory lock) reads what the broker holds now and marks
every event it lacks unpublished again — the outbox sends those once more, in order, and nothing twice.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from system.batching import BackgroundBatcher
from system.storage.jobs import JobStore

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


class OutboxPublisher:
    """Publishes outbox rows. When Kafka fails, a breaker opens for ``cool_down`` seconds: job threads stop waiting
    on the broker (their events stay in the outbox) and only the periodic ``sweep`` probes it, re-creating the topics
    a restarted in-memory broker lost."""

    def __init__(
        self,
        bootstrap: str,
        store: JobStore,
        topics: list[str] | None = None,
        timeout_s: float = 3,
        cool_down: float = 30,
        gather_s: float = 0.003,
    ):
        self.store = store
        self.bootstrap = bootstrap
        self.topics = topics or []
        self.timeout_s = timeout_s
        self.cool_down = cool_down
        self.open_until = 0.0
        self.producer = self._new_producer()
        self._lock = threading.Lock()
        self._admin: AdminClient | None = None  # one for the periodic log check (it reconnects by itself)
        # job ids whose new events are sent in the background (publish_soon)
        self._background = BackgroundBatcher(
            self.publish_jobs, name="outbox-publisher", batch_size=200, gather_s=gather_s
        )

    def _new_producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": int(self.timeout_s * 1000),
            }
        )

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
        token = rows[0].get("claim_token")  # one claim's rows: its marks stick only while the claim is still theirs
        landed: list[int] = []
        uncertain = [r for r in rows if r.get("was_uncertain")]
        if uncertain:  # an earlier publish of these may have reached the broker: whatever is in the log stays there
            try:
                present = event_ids_in(self.bootstrap, sorted({r["topic"] for r in uncertain}), timeout_s=10)
            except Exception as exc:
                self.store.release_claims([r["id"] for r in rows], token=token)
                self.open_until = time.monotonic() + self.cool_down
                log.warning("could not check the log for events an earlier publish may have delivered: %s", exc)
                return 0
            landed = [r["id"] for r in uncertain if r["id"] in present]
            self.store.mark_published(landed, token)
            rows = [r for r in rows if r["id"] not in set(landed)]
            if landed:
                log.warning(
                    "events an earlier publish delivered were in the log already; not sent again",
                    extra={"count": len(landed)},
                )
            if not rows:
                return len(landed)
        producer = self.producer  # thread-safe; each caller waits for its own messages only
        try:
            for row in rows:
                payload = {**row["payload"], "event_id": row["id"]}
                producer.produce(
                    row["topic"],
                    key=row["key"],
                    value=json.dumps(payload, default=str),
                    on_delivery=functools.partial(on_delivery, row_id=row["id"]),
                )
        except (KafkaException, BufferError) as exc:
            # e.g. the idempotent producer's fatal state after a broker that lost its log: it refuses every produce
            # from now on, so it is replaced; what it may have sent is checked in the log before a resend
            self.store.release_claims([r["id"] for r in rows], uncertain=True, token=token)
            self.open_until = time.monotonic() + self.cool_down
            self._replace_producer(producer)
            log.warning("kafka producer failed; the events stay in the outbox: %s", exc)
            return len(landed)
        deadline = time.monotonic() + self.timeout_s + 2
        while len(acked) + len(failed) < len(rows) and time.monotonic() < deadline:
            producer.poll(0.05)
        marked = self.store.mark_published(acked, token)
        voided = [i for i in acked if i not in marked]
        if voided:  # acknowledged by a broker that has since lost its log (restore_unpublished voided the claim)
            self.store.release_voided(voided)
            log.warning(
                "events acknowledged by a broker that has since lost its log; they will be checked and sent again",
                extra={"count": len(voided)},
            )
        if len(acked) < len(rows):
            # refused or unanswered: an unanswered one may have reached the broker, so it is checked before a resend
            self.store.release_claims([r["id"] for r in rows if r["id"] not in set(acked)], uncertain=True, token=token)
            self.open_until = time.monotonic() + self.cool_down
            self._replace_producer(producer)
            log.warning(
                "kafka refused %d event(s); they stay in the outbox: %s",
                len(rows) - len(acked),
                failed[0] if failed else "no delivery report",
            )
        return len(marked) + len(landed)

    def _replace_producer(self, producer: Producer) -> None:
        """A broker that came back empty does not know this producer's id: start afresh (once, whoever sees it)."""
        with self._lock:
            if self.producer is producer:
                producer.purge()
                self.producer = self._new_producer()

    def publish_jobs(self, job_ids) -> int:
        """The unpublished events of these jobs in one go: one claim, one produce-and-wait, one mark for all."""
        if time.monotonic() < self.open_until or not job_ids:
            return 0
        return self.publish(self.store.claim_unpublished(job_ids=list(job_ids)))

    def publish_soon(self, job_id) -> None:
        """Hand a job's new events to this process's background publisher, which sends whatever piled up meanwhile
        in one batch (a few ms later). The caller does not wait for the broker: the events are committed in the
        outbox already, so if this process dies first a sweep publishes them, and nothing is lost."""
        self._background.put(job_id)

    def flush_pending(self, timeout: float = 10) -> None:
        """Publish what was handed over and stop the background publisher (shutdown)."""
        self._background.close(timeout)

    def sweep(self, older_than_seconds: float = 10, budget_s: float = 5.0, batch: int = 500) -> int:
        """Events a dead worker committed but never published, or that Kafka refused: also the breaker's probe.
        Batch after batch while they come full (a restored log is thousands of events), for up to ``budget_s``."""
        total = 0
        deadline = time.monotonic() + budget_s
        first = True
        while True:
            rows = self.store.claim_unpublished(older_than_seconds=older_than_seconds, limit=batch)
            if first and rows and self.topics and time.monotonic() < self.open_until + 60:
                try:  # a restarted in-memory broker has forgotten its topics
                    ensure_topics(self.bootstrap, self.topics)
                except Exception as exc:
                    self.store.release_claims([r["id"] for r in rows], token=rows[0].get("claim_token"))
                    log.warning("kafka still unavailable: %s", exc)
                    return 0
            first = False
            delivered = self.publish(rows)
            total += delivered
            if rows and delivered == len(rows):
                self.open_until = 0.0
            if len(rows) < batch or delivered < len(rows) or time.monotonic() > deadline:
                return total

    def restore_lost_log(self) -> int:
        """If the broker lost its log (the deployment's marker topic is gone), republish what it lost from the
        outbox. Cheap when nothing was lost: one metadata request. Returns the number of events restored."""
        marker = f"verisim.log-epoch.{self.store.queue or 'default'}"
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        if marker in self._admin.list_topics(timeout=5).topics:
            return 0
        restored = self.store.restore_unpublished(marker, lambda topics: event_ids_in(self.bootstrap, topics))
        if restored is None:  # another worker is restoring
            return 0
        ensure_topics(self.bootstrap, [marker], partitions=1, admin=self._admin)
        if restored:
            log.warning(
                "the broker lost its log (restarted without persistence?): restoring events from the outbox",
                extra={"count": restored},
            )
            self.sweep(older_than_seconds=0)
        return restored

    def close(self) -> None:
        self.flush_pending()
        self.producer.flush(10)
