"""A real round trip on every backing service of the session's stack."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from tests.lazy import lazy

openai = lazy("openai")  # imported by the test that talks to the mock service, not by collection


def test_postgres_sql_roundtrip_in_own_schema(pg_schema, stack):
    with psycopg.connect(pg_schema.dsn) as conn:
        conn.execute("CREATE TABLE roundtrip_jobs (id uuid PRIMARY KEY, state text NOT NULL, n int)")
        ids = [uuid.uuid4() for _ in range(5)]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO roundtrip_jobs VALUES (%s, 'queued', %s)", [(i, n) for n, i in enumerate(ids)])
        conn.commit()
        # a rolled-back transaction leaves no trace
        with pytest.raises(psycopg.errors.UniqueViolation):
            with conn.transaction():
                conn.execute("UPDATE roundtrip_jobs SET state = 'done' WHERE n = 0")
                conn.execute("INSERT INTO roundtrip_jobs VALUES (%s, 'dup', 0)", (ids[1],))
        rows = conn.execute("SELECT state, count(*), sum(n) FROM roundtrip_jobs GROUP BY state").fetchall()
        assert rows == [("queued", 5, 10)]
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        assert schema == pg_schema.name
    # the table lives only in this test's schema
    with psycopg.connect(stack.postgres.dsn) as conn:
        found = conn.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'roundtrip_jobs'"
        ).fetchall()
    assert (pg_schema.name,) in found and ("public",) not in found


def test_redis_pubsub_and_expiry(redis_ns):
    r = redis_ns.client
    channel = redis_ns.key("events")
    pubsub = r.pubsub()
    pubsub.subscribe(channel)
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    got = []

    def listen():
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            m = pubsub.get_message(timeout=0.5)
            if m and m["type"] == "message":
                got.append(m["data"])

    t = threading.Thread(target=listen)
    t.start()
    for i in range(3):
        assert r.publish(channel, f"state-{i}") == 1  # one subscriber received it
    t.join(6)
    pubsub.close()
    assert got == ["state-0", "state-1", "state-2"]

    key = redis_ns.key("job:status:x")
    r.set(key, "queued", px=300)
    assert r.get(key) == "queued"
    time.sleep(0.45)
    assert r.get(key) is None


def test_sqs_send_receive_visibility_timeout_and_dlq_redrive(sqs_queues):
    q = sqs_queues.create("jobs", visibility_timeout=1, dlq=True, max_receive_count=2)
    sqs = sqs_queues.client
    sqs.send_message(
        QueueUrl=q.url,
        MessageBody='{"job": 1}',
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "inference"}},
    )

    def receive(url, wait=3):
        return sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=wait,
            AttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])

    first = receive(q.url)
    assert len(first) == 1 and first[0]["Body"] == '{"job": 1}'
    assert first[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    assert first[0]["MessageAttributes"]["kind"]["StringValue"] == "inference"
    # invisible while in flight ...
    assert receive(q.url, wait=0) == []
    # ... redelivered after the visibility timeout, with the count raised
    time.sleep(1.2)
    second = receive(q.url)
    assert len(second) == 1 and second[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    # past maxReceiveCount the message moves to the DLQ instead of being delivered a third time
    time.sleep(1.2)
    assert receive(q.url, wait=1) == []
    dead = receive(q.dlq.url)
    assert len(dead) == 1 and dead[0]["Body"] == '{"job": 1}'
    sqs.delete_message(QueueUrl=q.dlq.url, ReceiptHandle=dead[0]["ReceiptHandle"])
    sources = sqs.list_dead_letter_source_queues(QueueUrl=q.dlq.url)["queueUrls"]
    assert q.url in sources


def test_sqs_long_poll_waits_and_delete_removes(sqs_queues):
    q = sqs_queues.create("poll")
    sqs = sqs_queues.client
    started = time.monotonic()
    assert sqs.receive_message(QueueUrl=q.url, WaitTimeSeconds=1).get("Messages", []) == []
    assert time.monotonic() - started >= 0.9  # a real long poll, not an immediate empty answer
    sqs.send_message_batch(QueueUrl=q.url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(5)])
    bodies = set()
    deadline = time.monotonic() + 10
    while len(bodies) < 5 and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=q.url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            bodies.add(m["Body"])
            sqs.delete_message(QueueUrl=q.url, ReceiptHandle=m["ReceiptHandle"])
    assert bodies == {f"m{i}" for i in range(5)}
    attrs = sqs.get_queue_attributes(QueueUrl=q.url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_s3_put_get_and_presigned_urls(s3_prefix):
    s3 = s3_prefix.client
    key = s3_prefix.key("jobs/abc/score.musicxml")
    payload = b"<score-partwise/>" * 100
    s3.put_object(
        Bucket=s3_prefix.bucket, Key=key, Body=payload, ContentType="application/xml", Metadata={"job-id": "abc"}
    )
    obj = s3.get_object(Bucket=s3_prefix.bucket, Key=key)
    assert obj["Body"].read() == payload and obj["Metadata"] == {"job-id": "abc"}
    listed = s3.list_objects_v2(Bucket=s3_prefix.bucket, Prefix=s3_prefix.prefix)["Contents"]
    assert [o["Key"] for o in listed] == [key]

    url = s3.generate_presigned_url("get_object", Params={"Bucket": s3_prefix.bucket, "Key": key}, ExpiresIn=60)
    assert httpx.get(url).content == payload
    tampered = url.replace("Signature=", "Signature=0")
    assert httpx.get(tampered).status_code == 403  # signatures are checked (S3_SKIP_SIGNATURE_VALIDATION=0)
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=s3_prefix.bucket, Key=s3_prefix.key("missing"))


def test_kafka_produce_and_consume_with_a_group(kafka_topics):
    topic = kafka_topics.create("results", partitions=3)
    producer = Producer({"bootstrap.servers": kafka_topics.kafka.bootstrap_servers, "enable.idempotence": True})
    sent = {f"job-{i}": f"result-{i}" for i in range(60)}
    errors = []
    for k, v in sent.items():
        producer.produce(topic, key=k, value=v, on_delivery=lambda err, msg: err and errors.append(err))
    assert producer.flush(10) == 0 and errors == []

    group = kafka_topics.group_id()
    consumer = Consumer(kafka_topics.consumer_config(group))
    consumer.subscribe([topic])
    received = {}
    deadline = time.monotonic() + 20
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() and msg.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError(msg.error())
            received[msg.key().decode()] = msg.value().decode()
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    finally:
        consumer.close()
    assert received == sent
    assert sum(tp.offset for tp in committed) == len(sent)  # the group's offsets cover every message
    # the same key always lands on the same partition (keyed by job id)
    assert len({tp.partition for tp in committed if tp.offset > 0}) > 1


def test_mock_openai_chat_completion_with_delay(stack, mock_openai):
    mock_openai.configure(delay_seconds=0.4)
    client = openai.OpenAI(base_url=stack.openai.base_url, api_key=stack.openai.api_key, max_retries=0)
    started = time.monotonic()
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Translate: Ave Maria"}]
    )
    elapsed = time.monotonic() - started
    assert reply.choices[0].message.content == "[mock] Translate: Ave Maria"
    assert reply.usage.total_tokens > 0
    assert elapsed >= 0.4
    [seen] = mock_openai.requests()
    assert seen["status"] == 200 and seen["delay"] == 0.4 and seen["retry_count"] == 0


def test_mock_openai_forced_429_and_sdk_retries(stack, mock_openai):
    # a rate limit of 1 request per minute: the second request is refused with Retry-After
    mock_openai.configure(rate_limit_rpm=1)
    client = openai.OpenAI(base_url=stack.openai.base_url, api_key=stack.openai.api_key, max_retries=0)
    msgs = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    retry_after = int(info.value.response.headers["retry-after"])
    assert 0 < retry_after <= 60
    assert info.value.code == "rate_limit_exceeded"

    # two scripted 429s with Retry-After 0: the SDK's two retries get through, and say which retry they are
    mock_openai.configure(rate_limit_rpm=0)
    mock_openai.script({"status": 429, "retry_after": 0}, {"status": 429, "retry_after": 0})
    retrying = openai.OpenAI(base_url=stack.openai.base_url, api_key=stack.openai.api_key, max_retries=2)
    reply = retrying.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert reply.choices[0].message.content == "[mock] hi"
    tail = mock_openai.requests()[-3:]
    assert [r["status"] for r in tail] == [429, 429, 200]
    assert [r["retry_count"] for r in tail] == [0, 1, 2]
