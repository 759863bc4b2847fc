"""The Redis-restart check's teeth (``ledger.cache_losses``, used by ``tests/chaos/test_process_faults.py``): a Redis
started the way the stack starts it keeps every status across a restart; the same Redis with its append-only file
turned off (the planted defect) loses them all, and the check names every lost job."""

from __future__ import annotations

import uuid

import pytest

from harness.oracles import ledger
from harness.stack.process import free_ports
from harness.stack.services.redis import LocalRedis
from system.storage.status_cache import status_key


@pytest.mark.parametrize(("planted", "persisted"), [([], True), (["--appendonly", "no"], False)])
def test_a_redis_restart_without_persistence_is_caught(tmp_path, planted, persisted):
    service = LocalRedis(tmp_path, free_ports(1)[0], extra_args=planted)
    service.spawn()
    service.wait_ready()
    try:
        url = service.endpoint().url
        ids = [str(uuid.uuid4()) for _ in range(20)]
        import redis

        r = redis.Redis.from_url(url)
        r.mset({status_key(j): "completed" for j in ids})
        r.close()
        assert ledger.cache_losses(url, ids) == []
        service.halt()  # a clean stop, as the chaos test's restart does
        service.start_again()
        lost = ledger.cache_losses(url, ids)
    finally:
        service.stop()
    assert lost == ([] if persisted else ids), f"lost {len(lost)} of {len(ids)}"
