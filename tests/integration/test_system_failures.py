"""Workers dying, poison messages, graceful shutdown: every accepted job still ends in exactly one terminal state."""

from __future__ import annotations

import json
import time
import uuid

import psycopg
from psycopg.types.json import Jsonb

from harness.drivers.events import by_key, read_topic
from harness.drivers.jobs import Jobs
from harness.oracles import ledger
from harness.polling import wait_for
from system.simulators import scores

MUSICXML = scores.musicxml()


def job_row(stack, job_id):
    with psycopg.connect(stack.postgres.dsn) as conn:
        return conn.execute(
            "SELECT status, attempts, error_code, error_message FROM jobs WHERE id=%s", (job_id,)
        ).fetchone()


def drain(sqs, url, wait=2) -> list[dict]:
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get("Messages", [])
        if not got:
            return out
        out += got
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_worker_killed_mid_job_redelivers_without_a_duplicate(system_factory, stack, mock_openai):
    # a short visibility timeout so the redelivery comes quickly once nobody extends it
    sut = system_factory(env={"SQS_VISIBILITY_TIMEOUT": "3"})
    sut.start(1, concurrency=1)
    doomed = sut.workers[0]
    mock_openai.configure(delay_seconds=3)  # the translation stage is slow: the kill lands mid-job
    with sut.client() as c:
        job_id = c.post("/api/v1/scores", files={"file": ("s.musicxml", MUSICXML)}, data={"title": "Kyrie"}).json()[
            "job_id"
        ]
        wait_for(lambda: mock_openai.requests(), 20, what="translation request in flight")
        assert job_row(stack, job_id)[0] == "running"
        sut.kill_worker(doomed)
        mock_openai.configure(delay_seconds=0)
        sut.start_worker(concurrency=1)
        wait_for(lambda: job_row(stack, job_id)[0] == "completed", 60, what="completed after redelivery")
    status, attempts, _, _ = job_row(stack, job_id)
    assert attempts == 2  # the killed attempt, then the one that finished
    report = ledger.settle(stack, [job_id])
    assert report.ok, report.summary()  # exactly one score_results event, Redis agrees
    assert len(mock_openai.requests()) >= 2


def test_poison_message_ends_in_the_dlq_with_the_job_failed_and_why(system_factory, stack):
    sut = system_factory(env={"SQS_MAX_RECEIVE_COUNT": "2", "WORKER_RETRY_BASE_SECONDS": "0.2"})
    sut.start_worker()
    sqs = stack.aws.client("sqs")
    url = sqs.get_queue_url(QueueName=sut.queue_name)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=sut.dlq_name)["QueueUrl"]
    # a job an older API version wrote, that crashes this worker every time (horizon is not a number)
    job_id = str(uuid.uuid4())
    with psycopg.connect(stack.postgres.dsn) as conn:
        conn.execute(
            "INSERT INTO jobs (id, kind, status, params) VALUES (%s, 'inference', 'queued', %s)",
            (
                job_id,
                Jsonb({"pattern": "linear", "values": [1, 2, 3], "horizon": "soon", "models": ["moving_average"]}),
            ),
        )
        conn.execute(
            "INSERT INTO outbox (job_id, topic, key, payload) VALUES (%s, 'job_events', %s, %s)",
            (job_id, job_id, Jsonb({"job_id": job_id, "kind": "inference", "status": "queued", "attempts": 0})),
        )  # its 'queued' event, as that API wrote it too
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"job_id": job_id, "kind": "inference", "v": 1}))
    sqs.send_message(QueueUrl=url, MessageBody="this is not a job message")

    wait_for(lambda: job_row(stack, job_id)[0] == "failed", 60, what="poison job failed")
    status, attempts, code, message = job_row(stack, job_id)
    assert code == "max_attempts_exceeded" and "ValueError" in message and "after 2 attempts" in message
    assert attempts == 2
    wait_for(lambda: sum(ledger.explain_dlq(stack, sut.dlq_name)[0].values()) == 2, 60, what="both in the DLQ")
    explained, problems = ledger.explain_dlq(stack, sut.dlq_name)
    assert explained == {"job failed: max_attempts_exceeded": 1, "not a job message": 1} and problems == []
    dead: list[dict] = []
    deadline = time.monotonic() + 60
    while len(dead) < 2 and time.monotonic() < deadline:
        dead += drain(sqs, dlq_url, wait=1)
    assert sorted(m["Body"] for m in dead) == sorted(
        [json.dumps({"job_id": job_id, "kind": "inference", "v": 1}), "this is not a job message"]
    )
    report = ledger.settle(stack, [job_id], failures={"max_attempts_exceeded": 1})
    assert report.ok, report.summary()  # failed in Postgres, Redis and one Kafka event per model


def test_sigterm_lets_the_in_flight_job_finish(system_factory, stack, mock_openai):
    sut = system_factory()
    sut.start(1, concurrency=1, grace=15)
    worker = sut.workers[0]
    mock_openai.configure(delay_seconds=2)
    with sut.client() as c:
        job_id = c.post("/api/v1/scores", files={"file": ("s.musicxml", MUSICXML)}).json()["job_id"]
        wait_for(lambda: mock_openai.requests(), 20, what="translation in flight")
        started = time.monotonic()
        code = sut.terminate_worker(worker, timeout=30)
    assert code == 0
    assert time.monotonic() - started < 15
    assert job_row(stack, job_id)[0] == "completed"  # finished, not abandoned
    report = ledger.settle(stack, [job_id])
    assert report.ok, report.summary()


def test_sigterm_hands_prefetched_messages_back_at_once(system_factory, stack, mock_openai):
    """Messages a worker prefetched (received, queued behind its busy thread) go back to the queue when it is told to
    stop, not after the visibility timeout: another worker finishes them long before that, and the stopped worker
    never ran them."""
    sut = system_factory(env={"SQS_VISIBILITY_TIMEOUT": "60", "WORKER_PREFETCH": "16"})
    sut.start(1, concurrency=1, grace=15)
    first = sut.workers[0]
    sqs = stack.aws.client("sqs")
    url = sqs.get_queue_url(QueueName=sut.queue_name)["QueueUrl"]

    def taken() -> int:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"])

    jobs = Jobs(sut, stack, "prefetch")
    mock_openai.configure(delay_seconds=2)  # the score job holds the worker's one thread
    jobs.score("Held up")
    wait_for(lambda: mock_openai.requests(), 20, what="translation in flight")
    queued = jobs.inference(5, seed=1)
    wait_for(lambda: taken() == 6, 10, what="the 5 inference messages prefetched")
    assert sut.terminate_worker(first, timeout=30) == 0
    mock_openai.configure(delay_seconds=0)
    sut.start_worker(concurrency=4)
    began = time.monotonic()
    rows = jobs.wait(timeout=50)
    assert time.monotonic() - began < 30, "the prefetched messages waited out the visibility timeout (60 s)"
    assert {r[0] for r in rows.values()} == {"completed"}
    assert all(rows[j][1] == 1 for j in queued)  # claimed once: by the second worker
    ran_first = {r["job_id"] for r in sut.log_records("INFO") if r["process"] == first.name and r["msg"] == "job done"}
    assert ran_first and not ran_first & set(queued), ran_first  # the stopped worker finished the score job only
    report = ledger.settle(stack, jobs.accepted)
    assert report.ok, report.summary()


def test_permanent_failure_fails_once_without_retries(system_factory, stack):
    sut = system_factory()
    sut.start_worker()
    sqs = stack.aws.client("sqs")
    url = sqs.get_queue_url(QueueName=sut.queue_name)["QueueUrl"]
    job_id = str(uuid.uuid4())
    with psycopg.connect(stack.postgres.dsn) as conn:
        conn.execute(
            "INSERT INTO jobs (id, kind, status, params) VALUES (%s, 'inference', 'queued', %s)",
            (job_id, Jsonb({"pattern": "linear", "values": [], "models": ["moving_average"]})),
        )
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"job_id": job_id, "kind": "inference", "v": 1}))
    wait_for(lambda: job_row(stack, job_id)[0] == "failed", 30, what="job failed")
    _, attempts, code, message = job_row(stack, job_id)
    assert (attempts, code) == (1, "invalid_series") and "non-empty" in message
    # the outbox publishes after the row commits: wait for the event, then judge every event the job has
    wait_for(
        lambda: by_key(read_topic(stack.kafka.bootstrap_servers, "inference_results")).get(job_id),
        30,
        0.5,
        what="the job's result event",
    )
    events = by_key(read_topic(stack.kafka.bootstrap_servers, "inference_results"))[job_id]
    assert [(e["model"], e["status"], e["error_code"]) for e in events] == [
        ("moving_average", "failed", "invalid_series")
    ]


def test_a_receives_jobs_run_as_one_batch_and_a_bad_one_fails_alone(system_factory, stack):
    """Ten messages wait before the worker starts, so one receive takes them all and the worker runs them as one
    batch: the jobs' terminal states commit in one transaction (one finished_at), the job with a bad series fails with
    its reason while its neighbours complete, a second message for a job is a duplicate (the job runs once), and a
    poison message among them is left to the DLQ path without failing anyone."""
    sut = system_factory()
    sut.start_api()  # creates the queues; no worker yet
    sqs = stack.aws.client("sqs")
    url = sqs.get_queue_url(QueueName=sut.queue_name)["QueueUrl"]
    good = [str(uuid.uuid4()) for _ in range(7)]
    bad = str(uuid.uuid4())
    with psycopg.connect(stack.postgres.dsn) as conn:
        for k, job_id in enumerate(good + [bad]):
            # each job its own series (level and slope), so a forecast handed to another job of the batch shows
            values = [] if job_id == bad else [1.0 + 3 * k + (k + 1) * i * 0.5 for i in range(12)]
            conn.execute(
                "INSERT INTO jobs (id, kind, status, params, queue) VALUES (%s, 'inference', 'queued', %s, %s)",
                (
                    job_id,
                    Jsonb({"pattern": "linear", "values": values, "models": ["lstm", "moving_average"]}),
                    sut.queue_name,
                ),
            )
            conn.execute(  # its 'queued' event, as the API writes it
                "INSERT INTO outbox (job_id, topic, key, payload) VALUES (%s, 'job_events', %s, %s)",
                (job_id, job_id, Jsonb({"job_id": job_id, "kind": "inference", "status": "queued", "attempts": 0})),
            )
    bodies = [{"job_id": j, "kind": "inference", "v": 1} for j in [*good, bad, good[0]]] + [{"not": "a job"}]
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": json.dumps(b)} for i, b in enumerate(bodies)]
    )
    worker = sut.start_worker()
    wait_for(lambda: all(job_row(stack, j)[0] in ("completed", "failed") for j in good + [bad]), 30, what="jobs")
    with psycopg.connect(stack.postgres.dsn) as conn:
        rows = conn.execute(
            "SELECT id::text, status, attempts, error_code, finished_at FROM jobs WHERE id = ANY(%s::uuid[])",
            (good + [bad],),
        ).fetchall()
    state = {r[0]: r[1:] for r in rows}
    assert {state[j][:3] for j in good} == {("completed", 1, None)}  # each ran once: the duplicate ran nothing
    assert state[bad][:3] == ("failed", 1, "invalid_series")
    done = [r for r in sut.log_records("INFO") if r["process"] == worker.name and r["msg"] == "job done"]
    assert len(done) == 7 and max(r["batch"] for r in done) > 1, [r["batch"] for r in done]
    # a batch's jobs finish in one transaction: the failed job shares its commit with the completed ones
    assert len({state[j][3] for j in good + [bad]}) < 8 and state[bad][3] in {state[j][3] for j in good}
    poison = [r for r in sut.log_records("ERROR") if r["process"] == worker.name and "poison" in r["msg"]]
    assert poison, "the poison message was not seen"
    # what each job of the batch produced is its own: every forecast against the oracle's, every copy alike
    report = ledger.settle(stack, good + [bad], failures={"invalid_series": 1})
    assert report.ok, report.summary()
    assert report.content["checked"]["inference: lstm"] == 7 and report.content["mismatches"] == 0
