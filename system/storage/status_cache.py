"""Redis: ``job:status:<id>`` holds each job's latest summary; every change is also published on ``jobs:events``."""

from __future__ import annotations

from typing import Any

import redis

from system.storage.jobs import dumps, job_summary

CHANNEL = "jobs:events"
STATUS_TTL_SECONDS = 7 * 24 * 3600

# Status only moves forward (queued < running < terminal): a late writer — the API's "queued" landing after a fast
# worker's "completed", or a stale redelivery — never overwrites a newer state. Publishes only what it wrote.
_PUT_FORWARD = """
local ranks = {queued=0, running=1, completed=2, completed_with_warnings=2, failed=2}
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


class StatusCache:
    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5,
                                           health_check_interval=30)
        self._put_forward = self.client.register_script(_PUT_FORWARD)

    def put(self, row: dict[str, Any]) -> bool:
        """Write the job's summary and publish it, unless Redis already holds a later state. True if written."""
        data = dumps(job_summary(row))
        return bool(self._put_forward(keys=[status_key(row["id"])], args=[data, STATUS_TTL_SECONDS, CHANNEL]))

    def get(self, job_id) -> str | None:
        return self.client.get(status_key(job_id))

    def ping(self) -> bool:
        return bool(self.client.ping())
