"""Properties of the stores' own rules, on the session's real Redis (Hypothesis): the forward-only status rule.

Writers race: the API's "queued" may land after a fast worker's "running" or "completed", a redelivered message may
write "running" again after the end. Whatever the order, Redis must end holding the latest write of the furthest
state, and a reader must never see a job go back.
"""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.oracles.contract import RANK, status_key
from system.storage.status_cache import StatusCache

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]


def row(job_id: str, status: str, n: int) -> dict:
    return {
        "id": job_id,
        "kind": "inference",
        "status": status,
        "params": {"pattern": "linear"},
        "attempts": n,
        "error_code": "x" if status == "failed" else None,
        "error_message": None,
        "enqueued_at": None,
        "started_at": None,
        "finished_at": None,
        "updated_at": None,
        "result": None,
    }


@pytest.fixture(scope="module")
def cache(stack):
    c = StatusCache(stack.redis.url)
    yield c
    c.client.close()


WRITES = st.lists(st.sampled_from(list(RANK)), min_size=1, max_size=12)


def forward_only_holds(cache, writes: list[str]) -> None:
    """The rule, checked for one sequence of writes: a reader never sees the job go back; a write lands only if it
    is at least as far as everything before it; Redis ends holding the last write of the furthest state."""
    job = str(uuid.uuid4())
    seen = -1
    try:
        for n, status in enumerate(writes):
            written = cache.put(row(job, status, n))
            held = json.loads(cache.get(job))
            assert RANK[held["status"]] >= seen, f"went back to {held['status']} after {writes[: n + 1]}"
            seen = RANK[held["status"]]
            assert written == (RANK[status] >= max(RANK[w] for w in writes[: n + 1])), (writes[: n + 1], written)
        top = max(RANK[w] for w in writes)
        last_of_top = max(i for i, w in enumerate(writes) if RANK[w] == top)
        held = json.loads(cache.get(job))
        assert (held["status"], held["attempts"]) == (writes[last_of_top], last_of_top)
    finally:
        cache.client.delete(status_key(job))


@given(writes=WRITES)
def test_status_only_moves_forward_whatever_order_the_writers_land_in(cache, writes):
    forward_only_holds(cache, writes)


# -- the outbox: claim, release, mark published, in any order, by two publishers --------------------------------------
OPS = st.lists(
    st.tuples(st.sampled_from(["claim", "release", "release_uncertain", "mark"]), st.sampled_from(["A", "B"])),
    min_size=1,
    max_size=14,
)


@contextlib.contextmanager
def isolated_outbox(stack, table_class=None):
    """The outbox table on a Postgres schema of its own (``table_class``: an ``OutboxTable`` or a sabotaged subclass)."""
    from harness.stack.isolation import PgSchema
    from system.storage.db import make_pool, migrate
    from system.storage.outbox import OutboxTable

    schema = PgSchema(stack.postgres)
    migrate(schema.dsn)
    pool = make_pool(schema.dsn, 2)
    try:
        yield (table_class or OutboxTable)(pool)
    finally:
        pool.close()
        schema.cleanup()


@pytest.fixture(scope="module")
def outbox_table(stack):
    with isolated_outbox(stack) as table:
        yield table


def outbox_holds(table, ops: list[tuple[str, str]]) -> None:
    """Model: an event is free, held by A or B, or published. A claim takes a free event and marks it uncertain (its
    publish may land before the mark commits); a release frees it (still uncertain); a mark publishes it for good."""
    from system.storage.jobs import JobStore

    store = JobStore(table.pool, {"inference": "i", "score": "s", "events": "e"})
    job = store.create("inference", {"pattern": "linear", "values": [1, 2], "models": ["moving_average"]})
    ids = [r["id"] for r in table.claim(job["id"], lease_seconds=0)]  # the rows create() wrote
    table.release(ids)
    held: dict[str, list[int]] = {"A": [], "B": []}
    published: set[int] = set()
    uncertain: set[int] = set(ids)  # the claim above
    for op, who in ops:
        if op == "claim":
            got = table.claim(job["id"])
            free = [i for i in ids if i not in published and i not in held["A"] + held["B"]]
            assert sorted(r["id"] for r in got) == sorted(free), (
                f"{who}'s claim got events {sorted(r['id'] for r in got)}, but only {sorted(free)} were free "
                f"(held: {held}, published: {sorted(published)})"
            )
            assert all(r["was_uncertain"] == (r["id"] in uncertain) for r in got)
            held[who] += [r["id"] for r in got]
            uncertain |= {r["id"] for r in got}
        elif op.startswith("release"):
            table.release(held[who], uncertain=op == "release_uncertain")
            held[who] = []
        else:
            table.mark_published(held[who])
            published |= set(held[who])
            uncertain -= set(held[who])
            held[who] = []
    # nothing published is ever claimable again, not even once every lease has run out (a publisher that died, or a
    # mark that never landed, looks like a lease still held until then); everything else is
    with table.pool.connection() as conn:
        conn.execute("UPDATE outbox SET claimed_until = now() - interval '1 second' WHERE job_id = %s", (job["id"],))
    left = {r["id"] for r in table.claim(job["id"])}
    assert left == set(ids) - published, (
        f"claimable at the end: {sorted(left)}, want {sorted(set(ids) - published)} (published: {sorted(published)})"
    )


@given(ops=OPS)
def test_an_outbox_event_is_leased_to_one_publisher_and_published_once(outbox_table, ops):
    outbox_holds(outbox_table, ops)
