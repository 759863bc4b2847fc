"""The Celery transport end to end: jobs submitted through the API travel as Celery tasks on the Redis broker, run by
``python -m system.worker --transport celery``, and end exactly as on SQS — one terminal state in Postgres, Redis and Kafka.
"""

from __future__ import annotations

import json

import httpx
import psutil
import redis

from harness.drivers.jobs import Jobs
from harness.polling import wait_for


def test_inference_and_score_jobs_run_on_celery(system_factory, stack, timeline):
    """...and Flower, as `nox -s up -- --transport celery` starts it, lists the worker and the jobs' tasks."""
    sut = system_factory(env={"CELERY_VISIBILITY_TIMEOUT": "30"}, transport="celery")
    sut.start(1, concurrency=4)
    flower = sut.start_flower()
    jobs = Jobs(sut, stack, "celery-e2e", timeline)
    for i in range(6):
        jobs.inference(5, seed=300 + i)
    jobs.score("Celery chorale")
    rows = jobs.wait(timeout=90)
    assert len(rows) == 31 and {r[0] for r in rows.values()} == {"completed"}, rows
    jobs.assert_ledger()
    # they travelled on Celery: the only worker is the Celery one, and it ran every job
    records = sut.log_records("INFO")
    assert any(r["msg"] == "worker ready" and r.get("transport") == "celery" for r in records)
    assert sum(r["msg"] == "job done" for r in records) == len(rows)
    with redis.Redis.from_url(stack.redis.url) as r:
        assert r.llen(sut.queue_name) == 0 and r.llen(sut.dlq_name) == 0  # nothing left waiting or dead
    workers = httpx.get(f"{flower}/api/workers", timeout=30).json()
    assert any(name.startswith("verisim-") for name in workers), workers

    # the task list fills from the workers' events as they arrive: every job is in a task (a request's inference jobs
    # travel together, a score job alone), named once its "received" event is in (a "succeeded" event can be read
    # first: the task is listed, its name still None)
    def listed():
        got = httpx.get(f"{flower}/api/tasks", timeout=10).json()
        carried = {j for j in rows for t in got.values() if j in str(t.get("args"))}
        return carried == set(rows) and all(t.get("name") for t in got.values()) and got

    tasks = wait_for(listed, 20, what="Flower lists a task for every job, named")
    assert {t["name"] for t in tasks.values()} == {"verisim.run_jobs"}
    assert {t["state"] for t in tasks.values()} == {"SUCCESS"}
    assert len(tasks) == 7, "a task per request (5 inference jobs each), a score job alone"
    depth = httpx.get(f"{sut.api_url}/api/v1/dashboard/queue", timeout=10)
    assert depth.status_code == 200, depth.text  # the dashboard's queue chart reads the Celery queue too


def test_a_poison_task_ends_in_the_dead_letters(system_factory, stack):
    """Not a job message: retried, then pushed to the ``<queue>-dlq`` list, where the ledger finds it. Five
    deliveries: more than Celery's default limit of retries (3), past which a retry raises and is acknowledged — the
    job's own attempts are the limit."""
    from harness.oracles import ledger
    from system.config import Settings
    from system.transports.celery import make_celery

    sut = system_factory(env={"SQS_MAX_RECEIVE_COUNT": "5", "WORKER_RETRY_BASE_SECONDS": "0.05"}, transport="celery")
    sut.start_worker(concurrency=2)
    app = make_celery(Settings(redis_url=stack.redis.url, sqs_queue_name=sut.queue_name))
    app.send_task("verisim.run_jobs", args=[[json.dumps({"not": "a job"})]], queue=sut.queue_name)
    with redis.Redis.from_url(stack.redis.url) as r:
        wait_for(lambda: r.llen(sut.dlq_name) == 1, 30, what="the poison task in the dead letters")
    assert ledger.explain_dlq(stack, sut.dlq_name) == ({"not a job message": 1}, [])
    records = sut.log_records("ERROR")
    assert sum(r["msg"].startswith("poison message") for r in records) == 5  # every attempt, then dead


def test_a_requests_tasks_reach_the_broker_in_one_round_trip(stack, monkeypatch):
    """The API's send of a request's jobs on Celery: its inference jobs ten to a task, each score job alone, every
    task on the broker's list, carried there by one Redis pipeline (kombu's publish batch), not a round trip per
    task."""
    import uuid

    from redis.client import Pipeline

    from system.config import Settings
    from system.transports.celery import CeleryTransport, _job_ids

    queue = f"celery-batch-{uuid.uuid4().hex[:8]}"
    transport = CeleryTransport(Settings(redis_url=stack.redis.url, sqs_queue_name=queue))
    transport.send([{"job_id": str(uuid.uuid4())}])  # the first send connects
    executed, commands = [], []
    run_pipeline, run_command = Pipeline.execute, redis.Redis.execute_command
    monkeypatch.setattr(
        Pipeline, "execute", lambda self, *a, **k: executed.append(len(self)) or run_pipeline(self, *a, **k)
    )
    monkeypatch.setattr(
        redis.Redis, "execute_command", lambda self, *a, **k: commands.append(a[0]) or run_command(self, *a, **k)
    )
    ids = [str(uuid.uuid4()) for _ in range(23)]
    messages = [{"job_id": i, "kind": "inference"} for i in ids[:21]] + [
        {"job_id": i, "kind": "score"} for i in ids[21:]
    ]
    assert transport.send(messages) == []
    monkeypatch.undo()
    assert executed == [5] and "LPUSH" not in commands, (executed, commands)
    with redis.Redis.from_url(stack.redis.url) as r:
        bodies = r.lrange(queue, 0, -1)
        r.delete(queue)
    carried = sorted(len(_job_ids(b)) for b in bodies)
    # the first send's task, then 21 inference jobs in tasks of 10, 10 and 1, and each score job alone
    assert carried == [1, 1, 1, 1, 10, 10], carried
    assert {j for b in bodies for j in _job_ids(b)} >= set(ids)


def test_tasks_no_live_worker_can_hold_are_told_apart_from_waiting_and_just_received_ones(stack):
    """What the workers ask the broker when one of them is found lost (``CeleryTransport.stranded``): of some queued
    jobs, a task still on the list is not stranded, nor one a worker received a moment ago; one received longer ago
    than a worker takes to begin it is (its worker is gone), and so is one the broker has nowhere (taken from the
    list by a worker killed before it recorded it)."""
    import time
    import uuid

    from kombu import Connection

    from system.config import Settings
    from system.transports.celery import CeleryTransport

    queue = f"celery-stranded-{uuid.uuid4().hex[:8]}"
    transport = CeleryTransport(Settings(redis_url=stack.redis.url, sqs_queue_name=queue, sqs_dlq_name=f"{queue}-d"))
    taken, waiting, nowhere = (str(uuid.uuid4()) for _ in range(3))
    for j in (taken, waiting):  # a task each (two requests)
        transport.send([{"job_id": j, "kind": "inference", "v": 1}])
    with Connection(transport.app.conf.broker_url) as conn:
        inbox = conn.SimpleQueue(queue)
        received = inbox.get(timeout=5)  # received and not acknowledged: in the broker's table of unacknowledged tasks
        assert [json.loads(b)["job_id"] for b in received.payload[0][0]] == [taken]
        assert transport.stranded([taken, waiting, nowhere], held_longer_than=30) == [nowhere]
        time.sleep(1.2)
        assert transport.stranded([taken, waiting, nowhere], held_longer_than=1) == [taken, nowhere]
        received.ack()
        inbox.close()


CRASH_ONCE = """
import os, runpy, sys
if not os.environ.get("CELERY_WORKER_RESTARTS"):  # the first start only: its consumer fails as kombu's can
    from celery.worker.consumer import consumer

    def fail(self):
        raise AttributeError("'NoneType' object has no attribute 'hostname' (planted)")

    consumer.Consumer.start = fail
sys.argv = ["system.worker", *sys.argv[1:]]
runpy.run_module("system.worker", run_name="__main__")
"""


def test_a_celery_worker_stopped_by_an_unrecoverable_error_starts_again(system_factory, stack):
    """Seen in CI's scenario on the seeds' layout: a Redis restart under load made kombu fail while it closed the
    dropped connection (``conninfo.hostname`` of a released connection), Celery called it unrecoverable and the
    worker exited; its jobs waited for the other. The worker program starts again in the same process (same pid):
    the jobs sent afterwards run."""
    import sys

    from harness.stack.process import ManagedProcess

    sut = system_factory(transport="celery")
    sut.start_api()
    proc = ManagedProcess(
        "worker-crash-once",
        [sys.executable, "-c", CRASH_ONCE, "--transport", "celery", "--concurrency", "2", "--grace", "2"],
        sut.workdir / "logs" / "worker-0.log",
        env=sut.env,
        stop_grace=5,
    ).start()
    try:
        jobs = Jobs(sut, stack, "celery-restart")
        jobs.inference(5, seed=900)
        rows = jobs.wait(timeout=60)
        assert {r[0] for r in rows.values()} == {"completed"}
        assert proc.proc.poll() is None  # still running: the same process
        records = sut.log_records("INFO")
        assert any(r["msg"] == "the Celery worker stopped on an error; starting it again" for r in records)
        assert len({r["pid"] for r in records if r["msg"] == "worker ready"}) == 1  # one pid, ready once, after
        jobs.assert_ledger()
    finally:
        proc.stop()


def test_a_channel_closed_after_its_connection_was_released_puts_its_tasks_back(stack):
    """kombu's bug behind the Celery workers' exits at a Redis restart: closing a channel whose connection had been
    released raised AttributeError (``conninfo.hostname`` of None) before its unacknowledged task went back. With
    ``keep_kombu_conninfo`` (every Celery app of the system applies it) the close puts the task back on the queue."""
    import uuid

    from kombu import Connection

    from system.transports.celery import keep_kombu_conninfo

    keep_kombu_conninfo()
    queue = f"celery-released-{uuid.uuid4().hex[:8]}"
    with Connection(stack.redis.url) as conn:
        inbox = conn.SimpleQueue(queue)
        inbox.put({"job": 1})
        received = inbox.get(timeout=5)  # taken, not acknowledged: held in the broker's table of unacknowledged tasks
        channel = received.channel
        channel.connection.client = None  # what a released connection leaves behind
        channel.close()  # raised AttributeError before
    with redis.Redis.from_url(stack.redis.url) as r:
        assert r.llen(queue) == 1, "the unacknowledged task is back on its queue"
        r.delete(queue)


def test_a_worker_loads_what_its_kinds_of_job_need_and_the_rest_when_such_a_job_comes(system_factory, stack):
    """The seeds' workers take one kind of job each (score jobs on SQS, inference jobs on Celery): at start a worker
    loads only what the kinds its transports bring need. One told that score jobs travel elsewhere (SCORE_TRANSPORT)
    loads the model and not the score reader; a score job that reaches it all the same still runs, its reader and
    OpenAI client made on arrival. And on the seeds' layout each kind of worker loads its own kind's."""
    sut = system_factory()  # the SQS transport: the API sends both kinds to SQS
    sut.start_api()
    worker = sut.start_worker(concurrency=2, env={"SCORE_TRANSPORT": "celery"})

    def score_readers() -> int:  # the score jobs' forkserver, a child of the worker once the reader is loaded
        return sum("forkserver" in " ".join(c.cmdline()) for c in psutil.Process(worker.pid).children())

    jobs = Jobs(sut, stack, "kinds-loaded")
    jobs.inference(3, seed=910)
    jobs.wait(timeout=60)
    assert score_readers() == 0, "the score reader was loaded by a worker that receives no score jobs"
    jobs.score("Comes all the same")
    rows = jobs.wait(timeout=90)
    assert {r[0] for r in rows.values()} == {"completed"}, rows
    assert score_readers() == 1
    jobs.assert_ledger()
    loaded = [r for r in sut.log_records("INFO") if r["msg"] == "models loaded"]
    assert [r["kinds"] for r in loaded] == [["inference"]], loaded

    seeds = system_factory(transport="seeds")
    seeds.start(1, concurrency=2)
    records = seeds.log_records("INFO")
    celery_pids = {r["pid"] for r in records if r["msg"] == "worker ready" and r.get("transport") == "celery"}
    kinds = {
        ("celery" if r["pid"] in celery_pids else "sqs"): r["kinds"] for r in records if r["msg"] == "models loaded"
    }
    assert kinds == {"celery": ["inference"], "sqs": ["score"]}, kinds
