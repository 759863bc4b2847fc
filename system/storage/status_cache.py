"""Redis: ``job:status:<id>`` holds each job's latest summary; every change is also published on ``jobs:events``."""

from __future__ import annotations

from typing import Any

import redis

from system.storage.jobs import dumps, job_summary

CHANNEL = "jobs:events"
STATUS_TTL_SECONDS = 7 * 24 * 3600


def status_key(job_id) -> str:
    return f"job:status:{job_id}"


class StatusCache:
    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5,
                                           health_check_interval=30)

    def put(self, row: dict[str, Any]) -> dict[str, Any]:
        summary = job_summary(row)
        data = dumps(summary)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(status_key(row["id"]), data, ex=STATUS_TTL_SECONDS)
        pipe.publish(CHANNEL, data)
        pipe.execute()
        return summary

    def get(self, job_id) -> str | None:
        return self.client.get(status_key(job_id))

    def ping(self) -> bool:
        return bool(self.client.ping())
