"""One real round trip per service, and what the stack promises to exist — shared by every provider."""

from __future__ import annotations

import json
import urllib.request

from harness.stack.endpoints import (
    AwsEndpoint,
    KafkaEndpoint,
    OpenAIEndpoint,
    PostgresEndpoint,
    PrometheusEndpoint,
    RedisEndpoint,
)


def postgres(ep: PostgresEndpoint) -> None:
    import psycopg

    with psycopg.connect(ep.dsn, connect_timeout=2) as conn:
        conn.execute("SELECT 1").fetchone()


def redis(ep: RedisEndpoint) -> None:
    import redis as redis_py

    client = redis_py.Redis.from_url(ep.url, socket_connect_timeout=1, socket_timeout=2)
    try:
        assert client.ping()
    finally:
        client.close()


def kafka(ep: KafkaEndpoint) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": ep.bootstrap_servers, "socket.timeout.ms": 1000})
    md = admin.list_topics(timeout=2)
    if not md.brokers:
        raise RuntimeError("metadata lists no brokers")


def aws(ep: AwsEndpoint) -> None:
    with urllib.request.urlopen(f"{ep.endpoint_url}/_localstack/health", timeout=2) as r:
        services = json.load(r).get("services", {})
    for svc in ("sqs", "s3"):
        if services.get(svc) not in ("available", "running"):
            raise RuntimeError(f"{svc} is {services.get(svc)!r}")
    ep.client("sqs").list_queues()
    ep.client("s3").list_buckets()


def create_aws_resources(ep: AwsEndpoint) -> None:
    """The bucket, the job queue and its dead-letter queue (3 receives, then the DLQ), unless they exist."""
    sqs = ep.client("sqs")
    ep.client("s3").create_bucket(Bucket=ep.bucket)
    dlq_url = sqs.create_queue(QueueName=ep.dlq_name)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    try:
        sqs.create_queue(
            QueueName=ep.queue_name,
            Attributes={
                "VisibilityTimeout": "30",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
            },
        )
    except sqs.exceptions.QueueNameExists:
        # after an emulator restart, a running system may have recreated its queue first, with its own settings:
        # the queue is there, which is all the stack promises
        pass


def openai(ep: OpenAIEndpoint) -> None:
    with urllib.request.urlopen(f"{ep.base_url}/models", timeout=2) as r:
        models = json.load(r)
    if not models.get("data"):
        raise RuntimeError("/v1/models listed no model")


def prometheus(ep: PrometheusEndpoint) -> None:
    with urllib.request.urlopen(f"{ep.url}/-/ready", timeout=2) as r:
        if r.status != 200:
            raise RuntimeError(f"/-/ready answered {r.status}")
