"""The system's storage rules, each against the real backend: migrations, forward-only status, leased outbox."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import psycopg

from system.storage.db import make_pool, migrate, migrations
from system.storage.jobs import JobStore
from system.storage.status_cache import CHANNEL, StatusCache


def test_migrations_apply_once_in_order(pg_schema):
    first = migrate(pg_schema.dsn)
    assert first == [v for v, _ in migrations()] and first == sorted(first)
    assert migrate(pg_schema.dsn) == []  # idempotent: a second start applies nothing
    with psycopg.connect(pg_schema.dsn) as conn:
        tables = {t for (t,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (pg_schema.name,))}
    assert {"jobs", "job_stages", "inference_results", "outbox", "schema_migrations"} <= tables


def _row(status: str, at: str = "2026-01-01T00:00:00+00:00"):
    t = datetime.fromisoformat(at)
    return {"id": uuid.UUID(int=7), "kind": "inference", "status": status, "params": {"pattern": "linear"},
            "attempts": 1, "error_code": None, "error_message": None, "enqueued_at": t, "started_at": t,
            "finished_at": t if status == "completed" else None, "updated_at": t, "result": None}


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


def test_two_publishers_never_claim_the_same_outbox_event(pg_schema):
    migrate(pg_schema.dsn)
    pool = make_pool(pg_schema.dsn, 4)
    try:
        store = JobStore(pool, {"inference": "i", "score": "s", "events": "e"})
        job = store.create("inference", {"pattern": "linear", "values": [1, 2], "models": ["moving_average"]})
        a = store.claim_unpublished(job["id"])
        b = store.claim_unpublished(job["id"])
        assert len(a) == 1 and b == []  # leased to the first caller
        store.release_claims([r["id"] for r in a])  # e.g. Kafka refused it
        c = store.claim_unpublished(job["id"])
        assert [r["id"] for r in c] == [r["id"] for r in a]
        store.mark_published([r["id"] for r in c])
        assert store.claim_unpublished(job["id"]) == []
        # a publisher that died holding a lease: once the lease runs out the sweep takes the event again
        store.claim(job["id"])
        leased = store.claim_unpublished(job["id"], lease_seconds=0)
        assert len(leased) == 1
        assert [r["id"] for r in store.claim_unpublished(older_than_seconds=0)] == [leased[0]["id"]]
    finally:
        pool.close()


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
        assert b.stale_queued(0) == [] and b.claim_unpublished(older_than_seconds=0) == []
        assert a.send_pending(lambda msgs: sent_by["a"].extend(msgs) or []) == 1
        assert sent_by == {"a": [{"job_id": str(mine["id"]), "kind": "inference", "v": 1}], "b": []}
        assert [r["id"] for r in a.stale_queued(0)] == [mine["id"]]
        assert len(a.claim_unpublished(older_than_seconds=0)) == 1  # its 'queued' event
    finally:
        pool.close()
