"""Process faults while a bounded stream of jobs runs: workers killed or frozen, Redis and Postgres restarted.

Select by fault: ``-k worker_kill``, ``worker_pause``, ``redis_restart``, ``redis_pause``, ``postgres_restart``,
``postgres_kill``, ``kafka_restart``, ``localstack_restart``. The same tests run on both stack providers: signals for
local processes, Docker kill/pause/stop/start for containers. Worker kill, worker pause and the Redis restart run on
both transports (``[sqs]``, ``[celery]``; ``--transport`` picks one).
"""

from __future__ import annotations

import signal
import time

import psycopg
import pytest

from harness.oracles import ledger
from harness.polling import wait_for


def unpublished(stack, ids) -> int:
    with psycopg.connect(stack.postgres.dsn) as conn:
        return conn.execute(
            "SELECT count(*) FROM outbox WHERE job_id = ANY(%s::uuid[]) AND published_at IS NULL", (ids,)
        ).fetchone()[0]


def holding(sut, worker) -> set[str]:
    """Jobs ``worker`` has begun (a stage done) and not yet ended ("job done" / "job failed"), read from its log."""
    begun, ended = set(), set()
    for r in sut.log_records("INFO"):
        if r["process"] != worker.name or "job_id" not in r:
            continue
        if r["msg"] == "stage done":
            begun.add(r["job_id"])
        elif r["msg"] in ("job done", "job failed"):
            ended.add(r["job_id"])
    return begun - ended


def test_worker_kill_mid_stream_loses_and_doubles_nothing(
    chaos_system, jobs_for, process_faults, http_faults, stack, timeline, transport
):
    sut = chaos_system(workers=2, concurrency=4, transport=transport)
    jobs = jobs_for(sut)
    with http_faults.delay(1.5):  # translations take a while: score jobs are mid-flight in both workers
        for i in range(6):
            jobs.score(f"Chorale {i}")
        for i in range(4):
            jobs.inference(5, seed=i * 10)
        # both workers hold jobs mid-flight (a score job's translations take seconds), the one about to die too
        wait_for(lambda: all(holding(sut, w) for w in sut.workers), 30, 0.2, what="both workers holding a job")
        process_faults.kill(sut.workers[0])
        for i in range(4, 8):
            jobs.inference(5, seed=i * 10)
        sut.start_worker(concurrency=4, grace=5)  # the replacement, as an orchestrator would start it
        rows = jobs.wait(timeout=120)
    assert len(rows) == 46 and {r[0] for r in rows.values()} == {"completed"}
    redelivered = [i for i, r in rows.items() if r[1] >= 2]
    assert redelivered, "no job was redelivered: the kill never hit a job in flight"
    next(w for w in timeline.windows if w.name == "worker_kill").evidence["redelivered_jobs"] = len(redelivered)
    jobs.assert_ledger()  # exactly one result event per job (and model), Redis agrees


def test_worker_pause_past_the_visibility_timeout(chaos_system, jobs_for, process_faults, http_faults, transport):
    sut = chaos_system(workers=2, concurrency=2, transport=transport)
    jobs = jobs_for(sut)
    with http_faults.delay(1.0):  # translations take a while: the frozen worker holds jobs mid-flight
        for i in range(4):
            jobs.score(f"Chorale {i}")
        wait_for(lambda: holding(sut, sut.workers[0]), 30, 0.2, what="worker-0 holding a job")
        with process_faults.pause(sut.workers[0]):
            # frozen past the visibility timeout (SQS 4 s; Celery 5 s + its 2 s restore interval): its messages go
            # to the other worker, which runs them again once it has a slot free. Frozen until that is seen (bounded)
            wait_for(lambda: any(r[1] >= 2 for r in jobs.rows().values()), 60, 0.3, what="a frozen job run again")
        rows = jobs.wait(timeout=120)
    assert {r[0] for r in rows.values()} == {"completed"}
    assert any(r[1] >= 2 for r in rows.values())  # the frozen worker's jobs were redelivered and run again
    jobs.assert_ledger()  # even when both workers finished the same job, one result counts


def test_redis_restart_while_jobs_run(chaos_system, jobs_for, process_faults, stack, transport):
    """Redis holds live statuses and is persisted (append-only file): a restart keeps the statuses written before
    it; those it missed while down are rewritten from Postgres by the workers. On Celery it is the broker too: jobs
    submitted while it is down are accepted and sent by the workers' re-send sweep once it is back."""
    sut = chaos_system(workers=2, concurrency=4, transport=transport)
    jobs = jobs_for(sut)
    jobs.inference(5, seed=90)
    jobs.wait(timeout=60)
    jobs.assert_ledger(timeout=30)  # cached before the restart
    before = list(jobs.accepted)
    with process_faults.service_down("redis") as window:
        for i in range(4):
            jobs.inference(5, seed=i)  # accepted: Redis is a cache, not a dependency of accepting a job
            time.sleep(0.5)
    # read at once, before any worker's reconcile (every 5 s) could rewrite them: the restart itself kept them
    lost = ledger.cache_losses(stack.redis.url, before)
    assert not lost, f"statuses cached before the restart were lost: {lost}"
    assert jobs.rejected == 0
    jobs.inference(5, seed=100)
    rows = jobs.wait(timeout=90)
    assert {r[0] for r in rows.values()} == {"completed"}
    # the outage reached the system: status writes failed while Redis was down (the API's, the workers')
    window.evidence["failed_cache_writes"] = sut.log_count("status cache unavailable")
    assert window.evidence["failed_cache_writes"] > 0
    # the statuses Redis missed while it was down are repaired from Postgres by the workers
    jobs.assert_ledger(timeout=30)


def test_postgres_restart_while_jobs_run(chaos_system, jobs_for, process_faults):
    sut = chaos_system(workers=2, concurrency=4)
    jobs = jobs_for(sut)
    jobs.inference(5, seed=1)
    with process_faults.service_down("postgres") as window:
        time.sleep(2)
        jobs.inference(5, seed=2)  # refused with a 503 while the system of record is down: not accepted
        window.evidence["refused"] = jobs.rejected
    assert jobs.rejected == 1 and jobs.last_status == 503  # the ledger checks the refused submission never ran
    for i in range(3):
        jobs.inference(5, seed=10 + i)
    rows = jobs.wait(timeout=120)
    assert len(rows) == 20 and {r[0] for r in rows.values()} == {"completed"}
    jobs.assert_ledger()


def test_redis_pause_freezes_the_cache_but_loses_no_job(chaos_system, jobs_for, process_faults):
    """A frozen Redis (SIGSTOP / docker pause) accepts connections and never answers: the system must time out on
    it, fall back to Postgres, and repair the cache once it thaws."""
    sut = chaos_system(workers=2, concurrency=4)
    jobs = jobs_for(sut)
    with process_faults.service_paused("redis") as window:
        for i in range(3):
            jobs.inference(5, seed=400 + i)
            time.sleep(0.5)
    jobs.inference(5, seed=410)
    rows = jobs.wait(timeout=90)
    assert {r[0] for r in rows.values()} == {"completed"} and len(rows) == 20
    # the freeze reached the system: its status writes timed out (or met the open breaker) and were repaired later
    window.evidence["failed_cache_writes"] = sut.log_count("status cache unavailable")
    assert window.evidence["failed_cache_writes"] > 0
    jobs.assert_ledger(timeout=30)


def test_postgres_kill_recovers_and_loses_no_committed_job(chaos_system, jobs_for, process_faults):
    """SIGKILL, no shutdown: Postgres runs crash recovery on the next start; every job it acknowledged survives."""
    sut = chaos_system(workers=2, concurrency=4)
    jobs = jobs_for(sut)
    jobs.inference(5, seed=500)
    jobs.wait(timeout=60)
    with process_faults.service_killed("postgres"):
        time.sleep(1)
        jobs.inference(5, seed=505)  # refused (503) while it is gone
    assert jobs.rejected == 1 and jobs.last_status == 503
    jobs.inference(5, seed=510)
    rows = jobs.wait(timeout=120)
    assert len(rows) == 10 and {r[0] for r in rows.values()} == {"completed"}
    jobs.assert_ledger()


def test_kafka_restart_while_jobs_run(chaos_system, jobs_for, process_faults, stack):
    """tansu keeps topics in memory: a restart empties it. The log is restored from the outbox (the events of jobs
    that finished before the restart are published again, once); events committed meanwhile wait in the outbox and
    arrive once the broker is back. None is lost, none doubled."""
    sut = chaos_system(workers=2, concurrency=4)
    jobs = jobs_for(sut)
    jobs.inference(5, seed=190)
    jobs.wait(timeout=60)
    jobs.assert_ledger(timeout=30)  # these jobs' events are in the log before the restart
    with process_faults.service_down("kafka") as window:
        for i in range(3):
            jobs.inference(5, seed=200 + i)
            time.sleep(1)
        # the outage reached the system: the jobs' events wait in the outbox, unpublished
        window.evidence["outbox_backlog"] = unpublished(stack, jobs.accepted)
    assert window.evidence["outbox_backlog"] > 0
    rows = jobs.wait(timeout=90)
    assert {r[0] for r in rows.values()} == {"completed"} and jobs.rejected == 0
    jobs.assert_ledger(timeout=60)  # the first jobs' events too: the log survived the broker's restart
    window.evidence["restored_log"] = sut.log_count("restoring events from the outbox")
    assert window.evidence["restored_log"] > 0


def test_localstack_restart_loses_queued_messages_but_no_job(chaos_system, jobs_for, process_faults):
    """The emulator keeps queues in memory: a restart loses every waiting message. A worker notices the queue was
    recreated (its CreatedTimestamp changed) and re-sends the queued jobs at once, well before the stale-job period
    (REQUEUE_AFTER_SECONDS, 300 s by default). While it is down, jobs are still accepted (the row is the promise):
    their messages wait in the SQS outbox (``send_pending``) and a worker sends them once the queue answers."""
    sut = chaos_system(workers=1, concurrency=4, REQUEUE_AFTER_SECONDS="300")  # the stale-job sweep out of reach
    jobs = jobs_for(sut)
    sut.workers[0].proc.send_signal(signal.SIGSTOP)  # a worker that takes nothing: these wait in the queue
    jobs.inference(5, seed=300)
    jobs.inference(5, seed=305)
    with process_faults.service_down("localstack"):
        time.sleep(1)
        jobs.inference(5, seed=310)  # accepted: the row is the promise; the message waits in the SQS outbox
    assert jobs.rejected == 0 and jobs.deferred == 5 and len(jobs.accepted) == 15
    sut.workers[0].proc.send_signal(signal.SIGCONT)
    jobs.inference(5, seed=315)  # sent at once again once it is back (the queue is recreated on the way)
    began = time.monotonic()
    rows = jobs.wait(timeout=60)
    assert time.monotonic() - began < 45, "the lost messages waited for the stale-job sweep"
    assert sut.log_count("sent jobs the queue had not taken") > 0  # the deferred jobs went out through the outbox
    assert sut.log_count("the queue was recreated") > 0  # the lost ones were re-sent on noticing the new queue
    assert len(rows) == 20 and {r[0] for r in rows.values()} == {"completed"}
    jobs.assert_ledger()


def test_a_celery_broker_that_lost_its_queue_loses_no_job(chaos_system, jobs_for, celery_tasks_lost):
    """Redis that comes back without its data (no persistence, a new instance) has lost the queue's tasks, and with
    them the stamp the deployment keeps beside the queue. A worker notices the new stamp and re-sends the queued
    jobs at once, well before the stale-job period (REQUEUE_AFTER_SECONDS, 300 s by default), as the SQS side does
    for a recreated queue. The loss is made directly, this queue's tasks and stamp deleted: the session's Redis keeps
    every other test's keys."""
    sut = chaos_system(workers=1, concurrency=4, transport="celery", REQUEUE_AFTER_SECONDS="300")
    jobs = jobs_for(sut)
    celery_tasks_lost(sut, jobs, seed=320, stamp_too=True)  # the broker lost this queue's data
    began = time.monotonic()
    rows = jobs.wait(timeout=60)
    assert time.monotonic() - began < 45, "the lost tasks waited for the stale-job sweep"
    assert sut.log_count("the queue was recreated") > 0  # re-sent on noticing the new stamp
    assert len(rows) == 10 and {r[0] for r in rows.values()} == {"completed"}
    jobs.assert_ledger()


def test_tasks_lost_as_the_celery_broker_went_away_are_sent_again_once_it_is_back(
    chaos_system, jobs_for, process_faults, celery_tasks_lost
):
    """kombu's Redis transport takes a task off the list, then records it as unacknowledged: a broker that goes away
    between the two leaves the task nowhere and its job queued (seen in CI's chaos under load: a Redis restart, four
    jobs queued for 51 s). Once the broker answers again, the workers look for queued jobs whose task is neither on
    the list nor held, and send them again, well before the stale-job period. Here the tasks are taken off the list
    directly before a restart (Redis keeps its data across it: the queue stamp is unchanged, so only this search can
    find them)."""
    sut = chaos_system(workers=1, concurrency=4, transport="celery", REQUEUE_AFTER_SECONDS="300")
    jobs = jobs_for(sut)
    _, r, key = celery_tasks_lost(sut, jobs, seed=330)  # taken off the list, never recorded as held
    time.sleep(5)  # a lease period: nothing else sends them again (the stale-job sweep is 300 s away)
    assert {row[0] for row in jobs.rows().values()} >= {"queued"}
    stamp = r.get(key)
    with process_faults.service_down("redis"):
        time.sleep(3)  # longer than the workers' 2 s look at the broker: they see it gone
    began = time.monotonic()
    rows = jobs.wait(timeout=60)
    assert time.monotonic() - began < 45, "the lost tasks waited for the stale-job sweep"
    assert r.get(key) == stamp and sut.log_count("the queue was recreated") == 0  # not the stamp's path
    assert sut.log_count("re-sending queued jobs whose task is nowhere") > 0
    assert len(rows) == 10 and {r[0] for r in rows.values()} == {"completed"}
    jobs.assert_ledger()


@pytest.mark.parametrize("offset_s", [300, -300])
def test_a_worker_minutes_off_stores_every_time_right(chaos_system, jobs_for, timeline, offset_s):
    """The only worker runs with its wall clock 5 minutes ahead (or behind): its jobs complete,
    it says its clock is off, and every stage time it stores falls inside its job's life (the ledger's
    ``times_impossible`` check; ``no_clock_sync`` is its sabotage twin)."""
    from harness.faults.clock import skewed_worker

    sut = chaos_system(workers=1)
    honest = sut.workers.pop()
    honest.stop()
    jobs = jobs_for(sut)
    with skewed_worker(sut, timeline, "clock_skew", offset_s) as fw:
        for i in range(3):
            jobs.inference(5, seed=1200 + i)
        jobs.score()
        rows = jobs.wait(timeout=120)
    failed = {j: r[2] for j, r in rows.items() if r[0] != "completed"}
    assert not failed and len(rows) == 16, failed
    assert fw.evidence["skewed_jobs"] >= 16 and fw.evidence["clock_warnings"] >= 1, fw.evidence
    jobs.assert_ledger(timeout=60)


def test_kafka_restart_never_lets_an_acknowledged_event_go_unwritten(pg_schema, tmp_path):
    """Seen in CI's scenario on the seeds' layout (two transports, four publishers): after a Kafka restart, 54 jobs'
    events were marked published and never reached the log. A broker that restarted empty hands its producer ids out
    again, and an idempotent producer that outlived it sends under an id a new producer holds: its sends look like
    that producer's duplicates, acknowledged and dropped. Here a publisher that outlived the restart sends while a new
    one has sent more: every event the outbox marks published must be in the new log."""
    from harness.stack.process import free_ports
    from harness.stack.services.kafka import LocalKafka
    from system.storage.db import make_pool, migrate
    from system.storage.events import ensure_topics, event_ids_in
    from system.storage.jobs import JobStore
    from system.storage.outbox import Outbox

    (port,) = free_ports(1)
    broker = LocalKafka(tmp_path, port)
    broker.spawn()
    broker.wait_ready()
    bootstrap, topics = f"127.0.0.1:{port}", {"inference": "results", "score": "scores", "events": "job-events"}
    migrate(pg_schema.dsn)
    pool = make_pool(pg_schema.dsn, 4)
    outboxes = []
    try:
        store = JobStore(pool, topics)

        def jobs(n: int) -> list:
            items = [{"pattern": "linear", "values": [1, 2], "models": ["moving_average"]}] * n
            return [j["id"] for j in store.create_many("inference", items)]

        def publish(outbox, ids) -> set[int]:
            """Claim these jobs' events and send them as one publish, as a publisher does that has not yet been
            told of the restart (its producer's error report still unread)."""
            rows = outbox.table.claim(job_ids=ids)
            assert outbox.publish(rows) == len(rows)
            return {r["id"] for r in rows}

        ensure_topics(bootstrap, sorted(set(topics.values())))
        old = Outbox(bootstrap, pool, topics=sorted(set(topics.values())))
        outboxes.append(old)
        publish(old, jobs(20))  # the old publisher's producer is known to the broker
        broker.halt()
        broker.start_again()
        ensure_topics(bootstrap, sorted(set(topics.values())))
        new = Outbox(bootstrap, pool, topics=sorted(set(topics.values())))
        outboxes.append(new)
        sent = publish(new, jobs(200))  # a new publisher, sending more than the old one did
        sent |= publish(old, jobs(20))  # the old one, after the restart
        in_log = event_ids_in(bootstrap, sorted(set(topics.values())), timeout_s=20)
        lost = sent - in_log
        assert not lost, f"{len(lost)} of {len(sent)} events marked published are not in the log"
    finally:
        for outbox in outboxes:
            outbox.close()
        pool.close()
        broker.stop()
