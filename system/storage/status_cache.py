"""Redis: ``job:status:<id>`` holds each job's latest summary; every change is also published on ``jobs:events``."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from system.jobs.lifecycle import lua_ranks
from system.jobs.shapes import dumps, job_summary

CHANNEL = "jobs:events"
STATUS_TTL_SECONDS = 7 * 24 * 3600

# Status only moves forward (system.jobs.lifecycle: queued < running < terminal): a late writer — the API's "queued" landing after a fast
# worker's "completed", or a stale redelivery — never overwrites a newer state. Publishes only what it wrote.
_PUT_FORWARD = f"""
local ranks = {lua_ranks()}
local new = cjson.decode(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur then
  local old = cjson.decode(cur)
  if (ranks[old['status']] or 0) > (ranks[new['status']] or 0) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
"""


def status_key(job_id) -> str:
    return f"job:status:{job_id}"


class CacheUnavailable(redis.ConnectionError):
    """Skipped without a network call: Redis failed moments ago (the breaker is open)."""


class StatusCache:
    """Best effort by design: callers catch ``redis.RedisError`` and go on from Postgres.

    A Redis that is down refuses at once, but a frozen one (paused, blackholed) lets every call wait for its socket
    timeout — and redis-py retries three times by default. So: short timeouts, one retry, and a breaker: after a
    connection error or timeout, calls fail at once for ``open_seconds`` (the redis_pause chaos test holds the API
    to it); then one call (the probe) tries Redis again while the others still fail at once, and its outcome closes
    the breaker or opens it for another period. Without the probe, every request in flight when a period ended
    waited out the timeout again: an API cut from Redis answered at a p95 of 4 s (the api_cut_from_redis window).
    """

    def __init__(self, url: str, timeout: float = 2.0, open_seconds: float = 5.0):
        self.client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 1),
        )
        self._put_forward = self.client.register_script(_PUT_FORWARD)
        self.open_seconds = open_seconds
        self._open_until = 0.0  # 0: closed
        self._probing = False  # a call is trying Redis after an open period: the others still fail at once
        self._lock = threading.Lock()

    def _call(self, fn, *args, **kwargs):
        with self._lock:
            wait = self._open_until - time.monotonic()
            if wait > 0:
                raise CacheUnavailable(f"status cache skipped for {wait:.1f}s more after a failure")
            if self._probing:
                raise CacheUnavailable("status cache skipped while a probe tries it again after a failure")
            self._probing = self._open_until > 0  # half open: this call is the probe
        try:
            result = fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError):
            with self._lock:
                self._open_until = time.monotonic() + self.open_seconds
                self._probing = False
            raise
        except Exception:
            with self._lock:
                self._probing = False  # Redis answered (with an error of another kind): it is there
                self._open_until = 0.0
            raise
        with self._lock:
            self._open_until, self._probing = 0.0, False
        return result

    def put(self, row: dict[str, Any]) -> bool:
        """Write the job's summary and publish it, unless Redis already holds a later state. True if written."""
        data = dumps(job_summary(row))
        return bool(
            self._call(self._put_forward, keys=[status_key(row["id"])], args=[data, STATUS_TTL_SECONDS, CHANNEL])
        )

    def put_many(self, rows: list[dict[str, Any]]) -> int:
        """``put`` for several jobs in one pipeline (one round trip, plus the script check); how many were written."""
        if not rows:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for row in rows:
            self._put_forward(
                keys=[status_key(row["id"])], args=[dumps(job_summary(row)), STATUS_TTL_SECONDS, CHANNEL], client=pipe
            )
        return sum(1 for written in self._call(pipe.execute) if written)

    def statuses(self, job_ids: list) -> list[str | None]:
        """The cached status of each job (None where Redis holds none)."""
        import json

        raw = self._call(self.client.mget, [status_key(j) for j in job_ids]) if job_ids else []
        out = []
        for v in raw:
            try:
                out.append(json.loads(v)["status"] if v else None)
            except (ValueError, KeyError, TypeError):
                out.append(None)
        return out

    def get(self, job_id) -> str | None:
        return self._call(self.client.get, status_key(job_id))

    def ping(self) -> bool:
        return bool(self._call(self.client.ping))
