"""The store properties' teeth (``tests/integration/test_properties_stores.py``): the same Hypothesis properties, run
against a sabotaged status cache or outbox, must find a counterexample and say what broke."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from system.jobs.shapes import dumps, job_summary
from system.storage.outbox import OutboxTable
from system.storage.status_cache import StatusCache, status_key
from tests.integration.test_properties_stores import (
    OPS,
    WRITES,
    forward_only_holds,
    isolated_outbox,
    outbox_holds,
)


class LastWriterWins(StatusCache):
    """Planted: a plain SET, without the forward-only rule."""

    def put(self, row):
        self.client.set(status_key(row["id"]), dumps(job_summary(row)))
        return True


class LeaseIgnored(OutboxTable):
    """Planted: a claim takes events another publisher holds."""

    def claim(self, job_id=None, **kwargs):
        with self.pool.connection() as conn:
            conn.execute("UPDATE outbox SET claimed_until = NULL WHERE job_id = %s", (job_id,))
        return super().claim(job_id, **kwargs)


class MarkLost(OutboxTable):
    """Planted: marking an event published writes nothing."""

    def mark_published(self, ids, token=None):
        return set()


def counterexample(prop, strategy, target) -> str:
    @settings(database=None, derandomize=True, max_examples=200)
    @given(strategy)
    def search(x):
        prop(target, x)

    with pytest.raises(AssertionError) as err:
        search()
    return str(err.value)


def test_a_cache_without_the_forward_only_rule_is_caught(stack):
    cache = LastWriterWins(stack.redis.url)
    try:
        said = counterexample(forward_only_holds, WRITES, cache)
    finally:
        cache.client.close()
    assert "went back to" in said, said


@pytest.mark.parametrize(("table_class", "words"), [(LeaseIgnored, "were free"), (MarkLost, "claimable at the end")])
def test_an_outbox_that_breaks_its_lease_or_loses_its_marks_is_caught(stack, table_class, words):
    with isolated_outbox(stack, table_class) as table:
        said = counterexample(outbox_holds, OPS, table)
    assert words in said, said
