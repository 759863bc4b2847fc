"""Per-test slices of a shared stack: own SQS queues, S3 prefix, Kafka topics/groups, Redis keys, Postgres schema.

Names use a LocalStack-style ``short_uid`` so parallel tests and reruns never collide; every factory cleans up
what it created.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from harness.stack.endpoints import AwsEndpoint, KafkaEndpoint, PostgresEndpoint, RedisEndpoint


def short_uid() -> str:
    return uuid.uuid4().hex[:8]


@dataclass
class Queue:
    name: str
    url: str
    arn: str
    dlq: Queue | None = None


class SqsQueues:
    """``create()`` gives a fresh queue, optionally with a DLQ and redrive policy."""

    def __init__(self, aws: AwsEndpoint):
        self.aws = aws
        self.client = aws.client("sqs")
        self.created: list[str] = []

    def _make(self, name: str, attributes: dict[str, str]) -> Queue:
        url = self.client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self.created.append(url)
        arn = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Queue(name, url, arn)

    def create(
        self,
        name: str = "q",
        *,
        visibility_timeout: int = 30,
        dlq: bool = False,
        max_receive_count: int = 3,
        fifo: bool = False,
        attributes: dict[str, str] | None = None,
    ) -> Queue:
        base = f"t-{short_uid()}-{name}"
        suffix = ".fifo" if fifo else ""
        attrs = {"VisibilityTimeout": str(visibility_timeout), **(attributes or {})}
        if fifo:
            attrs.setdefault("FifoQueue", "true")
        dead = None
        if dlq:
            dead = self._make(f"{base}-dlq{suffix}", {"FifoQueue": "true"} if fifo else {})
            attrs["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dead.arn, "maxReceiveCount": str(max_receive_count)}
            )
        queue = self._make(base + suffix, attrs)
        queue.dlq = dead
        return queue

    def cleanup(self) -> None:
        for url in reversed(self.created):
            try:
                self.client.delete_queue(QueueUrl=url)
            except self.client.exceptions.QueueDoesNotExist:
                pass


@dataclass
class S3Prefix:
    """A key prefix of its own in the stack's bucket."""

    aws: AwsEndpoint
    prefix: str = field(default_factory=lambda: f"t-{short_uid()}/")

    def __post_init__(self):
        self.bucket = self.aws.bucket
        self.client = self.aws.client("s3")

    def key(self, name: str) -> str:
        return self.prefix + name.lstrip("/")

    def cleanup(self) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})


class KafkaTopics:
    """``create()`` gives a fresh topic; ``group_id()`` a fresh consumer group; ``consumer_config()`` test timings."""

    def __init__(self, kafka: KafkaEndpoint):
        from confluent_kafka.admin import AdminClient

        self.kafka = kafka
        self.admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
        self.created: list[str] = []

    def create(self, name: str = "t", partitions: int = 3) -> str:
        from confluent_kafka.admin import NewTopic

        topic = f"t-{short_uid()}-{name}"
        futures = self.admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        futures[topic].result(timeout=10)
        self.created.append(topic)
        return topic

    @staticmethod
    def group_id(name: str = "g") -> str:
        return f"g-{short_uid()}-{name}"

    def consumer_config(self, group_id: str | None = None, **extra) -> dict:
        # tansu's group join takes ~session.timeout.ms / 2: keep it short in tests (docs/local-backends.md)
        return {
            "bootstrap.servers": self.kafka.bootstrap_servers,
            "group.id": group_id or self.group_id(),
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 300,
            "enable.auto.commit": False,
            **extra,
        }

    def cleanup(self) -> None:
        if self.created:
            for fut in self.admin.delete_topics(self.created, operation_timeout=10).values():
                try:
                    fut.result(timeout=10)
                except Exception:
                    pass


class RedisNamespace:
    """A key prefix of its own; ``key(name)`` builds keys, cleanup deletes everything under the prefix."""

    def __init__(self, redis_ep: RedisEndpoint):
        import redis

        self.prefix = f"t:{short_uid()}:"
        self.client = redis.Redis.from_url(redis_ep.url, decode_responses=True)

    def key(self, name: str) -> str:
        return self.prefix + name

    def cleanup(self) -> None:
        keys = list(self.client.scan_iter(match=self.prefix + "*", count=500))
        if keys:
            self.client.delete(*keys)
        self.client.close()


class PgSchema:
    """A schema of its own; ``dsn`` connects with ``search_path`` set to it, so unqualified names land there."""

    def __init__(self, pg: PostgresEndpoint):
        import psycopg

        self.pg = pg
        self.name = f"t_{short_uid()}"
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.name}"')
        self.dsn = pg.dsn_for(search_path=self.name)

    def cleanup(self) -> None:
        import psycopg

        with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
