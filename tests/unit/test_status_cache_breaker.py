"""A frozen Redis (it accepts connections, never answers) costs one bounded wait, then calls fail at once."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from system.storage.status_cache import CacheUnavailable, StatusCache

ROW = {
    "id": "a",
    "kind": "inference",
    "status": "queued",
    "params": {"pattern": "linear"},
    "attempts": 0,
    "error_code": None,
    "error_message": None,
    "enqueued_at": None,
    "started_at": None,
    "finished_at": None,
    "updated_at": None,
    "result": None,
}


@pytest.fixture
def frozen_redis():
    """A listening socket nobody reads from: the kernel completes the handshake, no answer ever comes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield f"redis://127.0.0.1:{srv.getsockname()[1]}/0"
    srv.close()


def test_a_frozen_redis_opens_the_breaker_after_one_bounded_wait(frozen_redis):
    cache = StatusCache(frozen_redis, timeout=0.3, open_seconds=2.0)
    t0 = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        cache.get("a")
    first = time.monotonic() - t0
    # two attempts (a call and one retry), each bounded by the socket timeout on its handshake and its command;
    # redis-py's default of 3 retries would take 2.4 s
    assert first < 0.3 * 6
    t0 = time.monotonic()
    for _ in range(20):
        with pytest.raises(CacheUnavailable, match="skipped"):
            cache.put(ROW)
    assert time.monotonic() - t0 < 0.3  # 20 calls, no network: the breaker answers
    assert isinstance(CacheUnavailable("x"), redis.RedisError)  # callers' `except redis.RedisError` still applies


def test_the_breaker_closes_again_and_calls_go_through(frozen_redis):
    cache = StatusCache(frozen_redis, timeout=0.2, open_seconds=0.3)
    with pytest.raises(redis.TimeoutError):
        cache.get("a")
    time.sleep(0.35)
    with pytest.raises(redis.TimeoutError):  # tried again for real once the window passed
        cache.get("a")


def test_after_an_open_period_one_probe_waits_and_the_others_fail_at_once(frozen_redis):
    """Half open: when the period ends, one call tries Redis again; the calls made meanwhile do not each wait out
    the timeout (an API with many requests in flight would answer them all seconds late)."""
    import threading

    cache = StatusCache(frozen_redis, timeout=0.3, open_seconds=0.2)
    with pytest.raises(redis.TimeoutError):
        cache.get("a")
    time.sleep(0.25)
    probe = threading.Thread(target=lambda: pytest.raises(redis.TimeoutError, cache.get, "a"))
    probe.start()
    time.sleep(0.05)  # the probe is waiting on the frozen socket
    t0 = time.monotonic()
    for _ in range(10):
        with pytest.raises(CacheUnavailable, match="probe"):
            cache.get("b")
    assert time.monotonic() - t0 < 0.1
    probe.join(5)
    with pytest.raises(CacheUnavailable, match="skipped for"):  # the probe failed: open for another period
        cache.get("c")
