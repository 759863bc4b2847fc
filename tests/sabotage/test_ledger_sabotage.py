"""The ledger's teeth, on the real stack: each test plants one defect (``harness.sabotage`` in a real worker or API
process, or a direct write to a store) and passes only when the ledger names that exact violation. A ledger that
stays green here fails the test.

Select one with ``-k``: ``ack_before_commit``, ``double_publish``, ``skip_redis``, ``never_finish``,
``drop_terminal_event``, ``ghost_model_event``, ``running_event_late``, ``refused`` (the store defects: test_content_sabotage.py).
"""

from __future__ import annotations

import time

import psycopg
import pytest

from harness.polling import wait_for
from harness.sabotage import CATALOG


def red(report, kind: str, min_count: int = 1) -> list[str]:
    """The report is red, with at least ``min_count`` problems of ``kind``; returns those problems."""
    assert not report.ok, f"the ledger stayed green over a planted defect ({kind} expected): {report.summary()}"
    hits = [p for p in report.problems if f"[{kind}]" in p]
    assert len(hits) >= min_count, f"want >= {min_count} [{kind}] problem(s), got: {report.summary()}"
    return hits


def ids_from(stack, sql: str, *params) -> list[str]:
    """The first column of ``sql``'s rows, as strings."""
    with psycopg.connect(stack.postgres.dsn) as conn:
        return [str(r[0]) for r in conn.execute(sql, params).fetchall()]


def jobs_in(stack, ids, *statuses: str) -> list[str]:
    """The ids among ``ids`` whose Postgres status is one of ``statuses``."""
    return ids_from(stack, "SELECT id FROM jobs WHERE id = ANY(%s::uuid[]) AND status = ANY(%s)", ids, list(statuses))


def published(stack, ids) -> list[str]:
    """The ids among ``ids`` whose every outbox event so far is marked published (in the log)."""
    sql = "SELECT job_id FROM outbox WHERE job_id = ANY(%s::uuid[]) GROUP BY job_id HAVING bool_and(published_at IS NOT NULL)"
    return ids_from(stack, sql, ids)


@pytest.mark.parametrize("on,defect", [("sqs", "ack_before_commit"), ("celery", "celery_early_ack")])
def test_ack_before_commit_and_a_kill_mid_job_loses_the_job(
    chaos_system, jobs_for, process_faults, http_faults, stack, on, defect
):
    """SQS: the message deleted on receipt; Celery: the task acknowledged on receipt (its default)."""
    sut = chaos_system(
        workers=1,
        concurrency=4,
        sabotage=defect,
        transport=on,
        CELERY_VISIBILITY_TIMEOUT="4",
        WORKER_SCORE_SLOTS="4",  # all three run at once: none is held back (a held message is not yet deleted)
        # the workers' leases would send a dead Celery worker's running jobs again whatever its acknowledgements
        # did: out of the way here, so what the defect alone loses is what the ledger must name
        WORKER_LOST_AFTER_SECONDS="600",
    )
    jobs = jobs_for(sut)
    with http_faults.delay(3.0):  # translations hang: the jobs are mid-flight when the worker dies
        ids = [i for n in range(3) for i in jobs.score(f"Doomed {n}")]
        in_flight = wait_for(lambda: jobs_in(stack, ids, "running"), 30, what="a score job running")
        process_faults.kill(sut.workers[0])
    sut.start_worker(concurrency=4, grace=5)  # a healthy replacement: it never sees the deleted messages
    # > the visibility timeout (4 s; Celery's restore runs every 2 s) plus a job's run: a kept message would be back
    # and its job done by the replacement
    time.sleep(9)
    # the jobs the defect lost: not terminal, with no worker on them and no message left (still so 2 s later). Not
    # every job in flight is lost: an acknowledgement not yet sent when the worker died lets its message come back.
    lost = jobs_in(stack, ids, "queued", "running")
    for _ in range(5):
        time.sleep(2)
        if (still := jobs_in(stack, ids, "queued", "running")) == lost:
            break
        lost = still
    assert lost, f"the planted defect lost no job: {in_flight} were running at the kill and all finished"
    hits = red(jobs.verdict(timeout=3), "not_terminal", len(lost))
    assert all(any(j in p for p in hits) for j in lost), hits  # the lost jobs are named
    # stuck where the dead worker left them: running, or still queued when it had taken (and acknowledged) the
    # message but not yet started the job
    assert all("(running)" in p or "(queued)" in p for p in hits), hits


def test_without_worker_leases_a_dead_celery_workers_jobs_wait_for_the_visibility_timeout(
    chaos_system, jobs_for, process_faults, http_faults, stack
):
    """The twin of the Celery worker kill (tests/chaos/test_process_faults.py): there the jobs a killed worker was
    running come back within its lease (WORKER_LOST_AFTER_SECONDS, 4 s in the chaos tests), although their tasks
    return only after Celery's visibility timeout (the system's default, 600 s). With the lease sweep planted away,
    they are still running after the lease, a sweep and a job's run: the ledger names them."""
    sut = chaos_system(
        workers=1, concurrency=4, sabotage="no_worker_leases", transport="celery", WORKER_SCORE_SLOTS="4"
    )
    jobs = jobs_for(sut)
    with http_faults.delay(3.0):  # translations hang: the jobs are mid-flight when the worker dies
        ids = [i for n in range(3) for i in jobs.score(f"Stranded {n}")]
        wait_for(lambda: jobs_in(stack, ids, "running"), 30, what="a score job running")
        process_faults.kill(sut.workers[0])
    sut.start_worker(concurrency=4, grace=5, sabotage="no_worker_leases")
    time.sleep(4 + 2 + 6)  # the lease (4 s), a sweep and a re-send (about 2 s), a score job's run (under 6 s)
    stranded = jobs_in(stack, ids, "running")
    assert stranded, "no job was stranded: the kill hit no running job, or something else sent them again"
    hits = red(jobs.verdict(timeout=2), "not_terminal", len(stranded))
    assert all(any(j in p for p in hits) for j in stranded), hits  # the stranded jobs are named


@pytest.mark.parametrize(
    "defect", ["no_stranded_search_after_broker_outage", "cached_queue_stamp"], ids=["outage", "stamp"]
)
def test_tasks_a_celery_broker_lost_wait_for_the_stale_sweep_without_their_search(
    chaos_system, jobs_for, process_faults, celery_tasks_lost, stack, defect
):
    """The twins of the two Celery broker-loss tests (tests/chaos/test_process_faults.py): there the jobs whose
    tasks the broker lost are sent again within seconds, once the broker answers again (``outage``: the search for
    tasks that are nowhere) or once its new queue stamp is seen (``stamp``: a Redis that lost its data). With that
    half planted away they are still queued after the broker's return, a lease period and a sweep: the ledger names
    them."""
    sut = chaos_system(workers=1, concurrency=4, transport="celery", REQUEUE_AFTER_SECONDS="300", sabotage=defect)
    jobs = jobs_for(sut)
    ids, _, _ = celery_tasks_lost(sut, jobs, seed=1400, stamp_too=defect == "cached_queue_stamp")
    time.sleep(5)
    if defect == "no_stranded_search_after_broker_outage":
        with process_faults.service_down("redis"):
            time.sleep(3)
    time.sleep(4 + 4 + 2)  # the broker seen again, the search's lease period, a re-send sweep
    stranded = jobs_in(stack, ids, "queued")
    assert stranded, "no job was left queued: the tasks were not lost, or something else sent them again"
    hits = red(jobs.verdict(timeout=2), "not_terminal", len(stranded))
    assert all(any(j in p for p in hits) for j in stranded), hits  # the lost jobs are named, still queued
    assert all("(queued)" in p for p in hits), hits


def test_a_worker_that_trusts_a_skewed_clock_stores_impossible_times(chaos_system, jobs_for, timeline):
    """``no_clock_sync``: the worker 5 minutes ahead writes its stage times as its clock reads them, after the jobs
    they belong to ended; the ledger names them."""
    from harness.faults.clock import skewed_worker

    sut = chaos_system(workers=1)
    sut.workers.pop().stop()
    jobs = jobs_for(sut)
    with skewed_worker(sut, timeline, "clock_skew", 300, sabotage="no_clock_sync"):
        ids = jobs.inference(3, seed=1300)
        jobs.wait(timeout=60)
    hits = red(jobs.verdict(timeout=5), "times_impossible", len(ids))
    assert any("after the job ended" in p for p in hits), hits


def test_a_job_that_never_finishes_is_not_terminal(chaos_system, jobs_for, stack):
    sut = chaos_system(workers=1, sabotage="never_finish")
    jobs = jobs_for(sut)
    ids = jobs.inference(2, seed=3)
    wait_for(lambda: len(jobs_in(stack, ids, "running")) == 2, 30, what="both jobs running")
    time.sleep(5)  # past the visibility timeout: the heartbeat keeps them, nothing finishes them
    hits = red(jobs.verdict(timeout=2), "not_terminal", 2)
    assert all("not terminal in Postgres (running)" in p for p in hits)


# a defect planted in the worker -> (the problem kind it must produce per job, how many per job, words of the message,
# other kinds it must produce too)
WORKER_DEFECTS = {
    "double_publish": ("result_duplicate", 2, "2 Kafka result events", ["events_duplicate"]),  # 2 models per job
    "skip_redis": ("redis_disagrees", 1, "Redis says 'running', Postgres says 'completed'", []),
    "drop_terminal_event": ("events_missing", 1, "job_events lacks completed", []),
    "ghost_model_event": ("result_unexpected", 1, "'ghost', which the job did not run", []),
    # the log holds queued, the terminal event, then running (the ids say otherwise), and the results before it too
    "running_event_late": ("events_order", 2, "in the log", []),
}


@pytest.mark.parametrize("defect", sorted(WORKER_DEFECTS))
def test_a_worker_defect_is_named_by_the_ledger(defect, chaos_system, jobs_for, stack):
    kind, per_job, words, also = WORKER_DEFECTS[defect]
    assert {kind, *also} <= set(CATALOG[defect].reveals)  # what the catalog says this defect reveals
    if defect == "running_event_late":
        # The defect lives in the worker's publisher, but whichever process claims a job's unpublished events sends
        # them all: the API, publishing its 'queued' event a few ms after it answered, would send a 'running' event
        # the worker had already committed. So the jobs are accepted, and their 'queued' events are in the log,
        # before the worker exists: every 'running' event is the worker's to send.
        sut = chaos_system(workers=0)
        jobs = jobs_for(sut)
        ids = jobs.inference(2, seed=len(defect))
        wait_for(lambda: len(published(stack, ids)) == len(ids), 30, what="the queued events in the log")
        sut.start_worker(grace=5, sabotage=defect)
    else:
        sut = chaos_system(workers=1, sabotage=defect)
        jobs = jobs_for(sut)
        jobs.inference(2, seed=len(defect))
    jobs.wait(timeout=60)
    report = jobs.verdict(timeout=5)
    hits = red(report, kind, 2 * per_job)
    assert all(words in p for p in hits), hits
    if defect == "running_event_late":  # each job: its job_events out of order, and its results before running
        assert sum("['queued#0', 'completed#1', 'running#1']" in p for p in hits) == 2, hits
        assert sum("result event(s) in the log before the job's running event" in p for p in hits) == 2, hits
    for other in also:
        red(report, other)


def test_a_refused_submission_that_runs_anyway_is_caught(chaos_system, jobs_for, stack):
    """The API answers 503 after it committed and enqueued: the client was told no, the job runs."""
    sut = chaos_system(workers=1, api_sabotage="refuse_after_accepting")
    jobs = jobs_for(sut)
    jobs.inference(2, seed=6)
    jobs.score("Refused")
    assert jobs.rejected == 2 and not jobs.accepted
    wait_for(lambda: _tokens_terminal(stack, jobs.refused_tokens), 60, what="the refused jobs ran")
    hits = red(jobs.verdict(timeout=3), "refused_ran", 3)
    assert all("refused by the API, yet recorded as job" in p for p in hits)


def _tokens_terminal(stack, tokens) -> bool:
    with psycopg.connect(stack.postgres.dsn) as conn:
        n = conn.execute(
            "SELECT count(*) FROM jobs WHERE (params->'metadata'->>'submission' = ANY(%s) "
            "OR params->>'filename_stem' = ANY(%s)) AND status IN ('completed','completed_with_warnings','failed')",
            (tokens, tokens),
        ).fetchone()[0]
    return n >= 3
