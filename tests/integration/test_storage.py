"""The system's storage rules, each against the real backend: migrations, forward-only status, leased outbox."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from system.storage.db import make_pool, migrate, migrations
from system.storage.jobs import Finish, JobStore
from system.storage.outbox import OutboxTable
from system.storage.status_cache import CHANNEL, StatusCache


def test_migrations_apply_once_in_order(pg_schema):
    first = migrate(pg_schema.dsn)
    assert first == [v for v, _ in migrations()] and first == sorted(first)
    assert migrate(pg_schema.dsn) == []  # idempotent: a second start applies nothing
    with psycopg.connect(pg_schema.dsn) as conn:
        tables = {
            t
            for (t,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (pg_schema.name,)
            )
        }
    assert {"jobs", "job_stages", "inference_results", "outbox", "schema_migrations"} <= tables


def _row(status: str, at: str = "2026-01-01T00:00:00+00:00"):
    t = datetime.fromisoformat(at)
    return {
        "id": uuid.UUID(int=7),
        "kind": "inference",
        "status": status,
        "params": {"pattern": "linear"},
        "attempts": 1,
        "error_code": None,
        "error_message": None,
        "enqueued_at": t,
        "started_at": t,
        "finished_at": t if status == "completed" else None,
        "updated_at": t,
        "result": None,
    }


def test_status_only_moves_forward_and_publishes_what_it_writes(stack, redis_ns):
    cache = StatusCache(stack.redis.url)
    sub = cache.client.pubsub()
    sub.subscribe(CHANNEL)
    sub.get_message(timeout=1)
    key = f"job:status:{uuid.UUID(int=7)}"
    cache.client.delete(key)
    try:
        assert cache.put(_row("running"))
        assert cache.put(_row("completed"))
        assert not cache.put(_row("queued"))  # the API's late "queued" must not hide the result
        assert not cache.put(_row("running"))  # nor a stale redelivery's "running"
        assert json.loads(cache.get(uuid.UUID(int=7)))["status"] == "completed"
        published = []
        while (m := sub.get_message(timeout=0.5)) is not None:
            if m["type"] == "message":
                published.append(json.loads(m["data"])["status"])
        assert published == ["running", "completed"]
    finally:
        cache.client.delete(key)
        sub.close()


@pytest.fixture
def outbox_with_a_job(pg_schema):
    """A job store and its outbox table on a fresh schema, and one inference job (its "queued" event in the
    outbox)."""
    migrate(pg_schema.dsn)
    pool = make_pool(pg_schema.dsn, 4)
    try:
        store = JobStore(pool, {"inference": "i", "score": "s", "events": "e"})
        job = store.create("inference", {"pattern": "linear", "values": [1, 2], "models": ["moving_average"]})
        yield store, OutboxTable(pool), job
    finally:
        pool.close()


def test_an_ack_from_a_broker_that_then_lost_its_log_does_not_mark_the_event_published(outbox_with_a_job):
    """Found by the lifecycle machine (a worker paused, Kafka restarted): publisher A claims an event and the broker
    acknowledges it; the broker restarts empty; another worker restores the log while A is stopped; then A marks the
    event published — for good, though the log that held it is gone. The restore voids the claims in flight, so A's
    late mark does not stick: the event stays unpublished and uncertain (looked for in the log, then sent again)."""
    store, table, job = outbox_with_a_job
    claimed = table.claim(job["id"])
    ids, token = [r["id"] for r in claimed], claimed[0]["claim_token"]
    assert table.restore_unpublished("verisim.log-epoch.test", lambda topics: set()) == 0  # nothing published yet
    assert table.claim(job["id"]) == []  # still A's: nobody sends it while A may be sending it
    assert table.mark_published(ids, token) == set()  # A resumes with the acknowledgement of the lost log
    table.release_voided(ids)  # ... and gives it back
    again = table.claim(job["id"])
    assert [r["id"] for r in again] == ids and again[0]["was_uncertain"]  # looked for in the log, then resent
    # the same late mark without the claim's token (the old rule) would have stuck: the event lost
    table.release(ids)
    assert table.mark_published(ids) == set(ids)
    assert table.claim(job["id"]) == []


def test_an_event_a_log_restore_missed_is_looked_for_again_before_it_is_sent(outbox_with_a_job):
    """Seen once in CI: after a Postgres kill (the broker untouched) a worker found the marker topic absent, and the
    restore's read of the log lacked one event the log held; it was sent again and Kafka had the job's 'completed'
    twice. A restored event comes back uncertain, so the publisher that claims it reads the log for it once more
    and sends it only if that read lacks it too."""
    store, table, job = outbox_with_a_job
    claimed = table.claim(job["id"])
    ids, token = [r["id"] for r in claimed], claimed[0]["claim_token"]
    assert table.mark_published(ids, token) == set(ids)
    assert table.restore_unpublished("verisim.log-epoch.test", lambda topics: set()) == len(ids)  # a read that missed
    again = table.claim(job["id"])
    assert [r["id"] for r in again] == ids and all(r["was_uncertain"] for r in again)


def test_a_voided_claim_that_failed_to_publish_is_given_back_at_once(outbox_with_a_job):
    """Publisher A's send fails (the broker is down) after a log restore voided its claim: giving the events back with
    A's old token frees them at once, uncertain, instead of leaving them leased for 30 s — and a job's later events,
    which wait behind them, with them (seen: the Kafka-restart chaos test took 31-37 s to agree before this)."""
    store, table, job = outbox_with_a_job
    claimed = table.claim(job["id"])
    ids, token = [r["id"] for r in claimed], claimed[0]["claim_token"]
    table.restore_unpublished("verisim.log-epoch.test", lambda topics: set())  # voids A's claim, keeps its lease
    store.claim(job["id"])  # the job's running event, behind the queued one
    assert table.claim(job["id"]) == []
    table.release(ids, uncertain=False, token=token)  # A gives back what it could not send
    again = table.claim(job["id"])
    assert [r["payload"]["status"] for r in again] == ["queued", "running"] and again[0]["was_uncertain"]


def test_two_publishers_never_claim_the_same_outbox_event(outbox_with_a_job):
    store, table, job = outbox_with_a_job
    a = table.claim(job["id"])
    b = table.claim(job["id"])
    assert len(a) == 1 and b == []  # leased to the first caller
    table.release([r["id"] for r in a])  # e.g. Kafka refused it
    c = table.claim(job["id"])
    assert [r["id"] for r in c] == [r["id"] for r in a]
    table.mark_published([r["id"] for r in c])
    assert table.claim(job["id"]) == []
    # a publisher that died holding a lease: once the lease runs out the sweep takes the event again
    store.claim(job["id"])
    leased = table.claim(job["id"], lease_seconds=0)
    assert len(leased) == 1
    assert [r["id"] for r in table.claim(older_than_seconds=0)] == [leased[0]["id"]]


def test_jobs_finished_together_commit_together_and_never_twice(outbox_with_a_job):
    """``claim_many``/``finish_many``, the worker's group commit: jobs claimed in one statement and finished in one
    transaction (one ``now()``: the same finished_at), each with its own outcome, its result rows and its events; a
    job already terminal gets no second transition, result or event."""
    store, table, job = outbox_with_a_job
    other = store.create("inference", {"pattern": "linear", "values": [1, 2], "models": ["moving_average"]})
    ids = [job["id"], other["id"]]
    claims = store.claim_many([*ids, uuid.uuid4()])  # an unknown id is simply not claimed
    assert sorted(claims) == sorted(ids) and {c.attempt for c in claims.values()} == {1}
    assert claims[job["id"]].job["started_at"] == claims[other["id"]].job["started_at"]  # one statement
    earlier = table.claim(job_ids=ids)  # queued + running: out of the way
    table.mark_published([r["id"] for r in earlier], earlier[0]["claim_token"])
    model = {"model": "moving_average", "pattern": "linear", "prediction": [3.0], "inference_ms": 0.1}
    done, failed = store.finish_many(
        [
            Finish(job["id"], "completed", {"ok": True}, [model]),
            Finish(other["id"], "failed", error_code="invalid_series", error_message="bad"),
        ]
    )
    assert (done["status"], failed["status"], failed["error_code"]) == ("completed", "failed", "invalid_series")
    assert done["finished_at"] == failed["finished_at"]  # one transaction
    assert store.finish_many([Finish(job["id"], "failed", error_code="late", error_message="x")]) == [None]
    assert store.claim_many(ids) == {}  # terminal: no second claim
    events = {(e["job_id"], e["topic"], e["payload"]["status"]) for e in table.claim(job_ids=ids)}
    assert events == {
        (job["id"], "e", "completed"),
        (job["id"], "i", "completed"),
        (other["id"], "e", "failed"),
        (other["id"], "i", "failed"),  # one per model it was asked for, with the reason
    }
    with store.pool.connection() as conn:
        results = conn.execute("SELECT job_id, model_name FROM inference_results WHERE job_id = ANY(%s)", (ids,))
        assert [(r["job_id"], r["model_name"]) for r in results] == [(job["id"], "moving_average")]
        status = conn.execute("SELECT status FROM jobs WHERE id = %s", (job["id"],)).fetchone()["status"]
    assert status == "completed"  # the late "failed" changed nothing


def test_an_attempt_that_lost_writes_no_stages_and_stage_times_follow_postgres_clock(outbox_with_a_job):
    """The stages an attempt ran are written with its job's terminal transition, and only if that attempt made it: a
    paused worker that finishes after its job was redelivered and ended elsewhere writes nothing (the full scenario's
    worker_pause window found its stage stored after the job ended). The stage times are shifted by the store's
    measured skew: a worker whose clock is minutes off stores them on Postgres's clock."""
    from datetime import UTC, datetime, timedelta

    store, table, job = outbox_with_a_job
    store.claim_many([job["id"]])
    assert abs(store.sync_clock()) < 1.0  # this process and Postgres share a clock
    store.skew = timedelta(seconds=-300)  # as if this process's clock were 5 minutes ahead
    ahead = datetime.now(UTC) + timedelta(seconds=300)
    stage = {"name": "predict", "attempt": 2, "started": ahead, "finished": ahead, "ms": 1.0, "status": "ok"}
    [won] = store.finish_many([Finish(job["id"], "completed", {"ok": True}, stages=[{**stage, "detail": None}])])
    late = {**stage, "name": "audio", "attempt": 1, "detail": None}
    assert store.finish_many([Finish(job["id"], "failed", error_code="late", stages=[late])]) == [None]
    with store.pool.connection() as conn:
        rows = conn.execute("SELECT stage, started_at FROM job_stages WHERE job_id = %s", (job["id"],)).fetchall()
    assert [r["stage"] for r in rows] == ["predict"]  # the losing attempt's "audio" stage is not there
    assert abs((rows[0]["started_at"] - won["finished_at"]).total_seconds()) < 2  # on Postgres's clock


def test_sweeps_touch_only_their_own_queues_jobs(pg_schema):
    """Two deployments sharing a database (each with its own queue) never send each other's jobs or publish each
    other's events: each sweep — pending sends, stale re-sends, unpublished events — keeps to its own queue."""
    migrate(pg_schema.dsn)
    pool = make_pool(pg_schema.dsn, 4)
    topics = {"inference": "i", "score": "s", "events": "e"}
    try:
        a, b = JobStore(pool, topics, queue="queue-a"), JobStore(pool, topics, queue="queue-b")
        mine = a.create("inference", {"pattern": "linear", "values": [1, 2], "models": ["moving_average"]})
        a.mark_send_pending([mine["id"]])
        sent_by: dict[str, list] = {"a": [], "b": []}
        assert b.send_pending(lambda msgs: sent_by["b"].extend(msgs) or []) == 0
        assert b.stale_queued(0) == [] and OutboxTable(pool, "queue-b").claim(older_than_seconds=0) == []
        assert a.send_pending(lambda msgs: sent_by["a"].extend(msgs) or []) == 1
        assert sent_by == {"a": [{"job_id": str(mine["id"]), "kind": "inference", "v": 1}], "b": []}
        assert [r["id"] for r in a.stale_queued(0)] == [mine["id"]]
        assert len(OutboxTable(pool, "queue-a").claim(older_than_seconds=0)) == 1  # its 'queued' event
    finally:
        pool.close()


def test_a_pooled_connection_whose_backend_died_is_replaced_not_handed_out(pg_schema):
    """The pool's check (no round trip: an idle connection has nothing to read) catches a backend that was killed
    while its connection sat idle in the pool; without the check the dead connection is handed out."""
    from psycopg_pool import ConnectionPool

    def pooled_backend_killed(pool) -> int:
        with pool.connection() as conn:
            old = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
        with psycopg.connect(pg_schema.dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (old,))
        time.sleep(0.3)  # the server's goodbye reaches the idle socket
        return old

    pool = make_pool(pg_schema.dsn, 1)
    try:
        old = pooled_backend_killed(pool)
        with pool.connection() as conn:
            assert conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"] != old
    finally:
        pool.close()
    unchecked = ConnectionPool(
        pg_schema.dsn, min_size=1, max_size=1, kwargs={"autocommit": True, "row_factory": dict_row}
    )
    try:  # the planted defect: the same fault on a pool without the check hands the dead connection out
        unchecked.wait(10)
        pooled_backend_killed(unchecked)
        with pytest.raises(psycopg.OperationalError), unchecked.connection() as conn:
            conn.execute("SELECT 1")
    finally:
        unchecked.close()


def test_a_requests_jobs_and_a_claim_carry_their_events_in_the_same_write(pg_schema):
    migrate(pg_schema.dsn)
    pool = make_pool(pg_schema.dsn, 2)
    try:
        store, table = JobStore(pool, {"inference": "i", "score": "s", "events": "e"}), OutboxTable(pool)
        items = [
            {"pattern": p, "values": [1, 2, 3], "models": ["moving_average"]}
            for p in ("linear", "seasonal", "cyclical")
        ]
        rows = store.create_many("inference", items)
        assert [r["params"]["pattern"] for r in rows] == ["linear", "seasonal", "cyclical"]  # the request's order
        events = table.claim(job_ids=[r["id"] for r in rows])
        assert sorted((e["job_id"], e["payload"]["status"]) for e in events) == sorted(
            (r["id"], "queued") for r in rows
        )
        table.mark_published([e["id"] for e in events])  # sent: a job's next events may follow
        claim = store.claim(rows[0]["id"])
        assert claim.attempt == 1 and claim.job["status"] == "running"
        [running] = table.claim(rows[0]["id"])
        table.mark_published([running["id"]])
        p = running["payload"]
        assert (p["job_id"], p["kind"], p["status"], p["attempts"]) == (str(rows[0]["id"]), "inference", "running", 1)
        assert datetime.fromisoformat(p["at"]) == claim.job["updated_at"]
        store.finish(rows[0]["id"], "completed", {"ok": True})
        assert store.claim(rows[0]["id"]) is None  # terminal: no second claim, no event
        assert [(e["topic"], e["payload"]["status"]) for e in table.claim(rows[0]["id"])] == [
            ("e", "completed"),
            ("i", "completed"),
        ]  # the status event, the model's result event
    finally:
        pool.close()


def test_a_jobs_events_are_claimed_only_behind_its_earlier_ones(outbox_with_a_job):
    """While one publisher holds a job's 'queued' event, another may not send its later events (they would reach the
    log first): they wait, flagged blocked, and go together once the earlier one is published."""
    store, table, job = outbox_with_a_job
    [queued] = table.claim(job["id"])  # the API's publisher, still producing
    store.claim(job["id"])  # the worker: running, and its event
    blocked: list = []
    assert table.claim(job["id"], blocked=blocked) == [] and blocked == [job["id"]]
    table.mark_published([queued["id"]])
    [running] = table.claim(job["id"])
    assert running["payload"]["status"] == "running"
    store.finish(job["id"], "completed", {"ok": True})
    assert table.claim(job["id"]) == []  # behind the running event, still on its way
    table.mark_published([running["id"]])
    assert {e["payload"]["status"] for e in table.claim(job["id"])} == {"completed"}


def test_the_background_publisher_sends_what_piles_up_in_batches(pg_schema, stack, kafka_topics):
    """``publish_soon`` from many job threads: every event reaches Kafka once and is marked published, in far fewer
    claims than jobs (one claim, one produce-and-wait and one mark per batch)."""
    from concurrent.futures import ThreadPoolExecutor

    from harness.drivers.events import read_topic
    from system.storage.outbox import Outbox

    migrate(pg_schema.dsn)
    pool = make_pool(pg_schema.dsn, 6)
    topic = kafka_topics.create()
    claims = []
    try:
        store = JobStore(pool, {"inference": topic, "score": topic, "events": topic})
        outbox = Outbox(stack.kafka.bootstrap_servers, pool)
        claim = outbox.table.claim

        def counted(*args, **kwargs):
            claims.append(kwargs.get("job_ids"))
            return claim(*args, **kwargs)

        outbox.table.claim = counted  # type: ignore[method-assign]
        rows = store.create_many("inference", [{"pattern": "linear", "values": [1, 2], "models": []}] * 60)
        with ThreadPoolExecutor(6) as threads:
            list(threads.map(lambda r: outbox.publish_soon(r["id"]), rows))
        outbox.close()  # publishes what is still pending
        assert len(claims) < len(rows) / 3, f"{len(claims)} claims for {len(rows)} jobs: not batched"
        assert claim(job_ids=[r["id"] for r in rows]) == []  # all marked published
        got = read_topic(stack.kafka.bootstrap_servers, topic)
        assert sorted(m["value"]["job_id"] for m in got) == sorted(str(r["id"]) for r in rows)  # each once
    finally:
        pool.close()
