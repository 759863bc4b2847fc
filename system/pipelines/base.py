"""What every pipeline shares: its errors, its result, and per-stage timing (Postgres + structured log)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("system.pipeline")


class JobError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PermanentJobError(JobError):
    """Retrying cannot help (bad input, unsupported format): the job fails now, with this reason."""


class TransientJobError(JobError):
    """A dependency hiccup: release the message with backoff; the queue's redrive policy bounds the retries."""


@dataclass
class PipelineResult:
    status: str  # completed | completed_with_warnings
    result: dict[str, Any]
    model_results: list[dict[str, Any]] = field(default_factory=list)


def wall_clock() -> datetime:
    """Now, by this host's wall clock: the one way the system reads it (``time.time``), so that a host whose clock is
    off is off everywhere alike (the clock-skew fault moves ``time.time``; Postgres's own now() stamps the jobs)."""
    return datetime.fromtimestamp(time.time(), UTC)


class StageTimer:
    """``with timer.stage("analysis"):`` records start, end, duration and outcome of a stage.

    It collects ``records``: the worker writes them with the job's terminal transition (one round trip), and a job's
    child process (see ``budget``) hands them to the parent, which ``replay``s them."""

    def __init__(self, job_id, attempt: int):
        self.job_id = job_id
        self.attempt = attempt
        self.durations_ms: dict[str, float] = {}
        self.records: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def stage(self, name: str, detail: dict | None = None):
        started = wall_clock()
        t0 = time.perf_counter()
        status = "ok"
        detail = detail if detail is not None else {}
        try:
            yield detail
        except BaseException as exc:
            status = f"error: {type(exc).__name__}"
            raise
        finally:
            self.add(name, started, wall_clock(), (time.perf_counter() - t0) * 1000, status, detail or None)

    def add(
        self, name: str, started: datetime, finished: datetime, ms: float, status: str, detail: dict | None
    ) -> None:
        self.durations_ms[name] = round(ms, 3)
        self.records.append(
            {
                "name": name,
                "attempt": self.attempt,
                "started": started,
                "finished": finished,
                "ms": ms,
                "status": status,
                "detail": detail,
            }
        )
        log.info(
            "stage done",
            extra={
                "job_id": str(self.job_id),
                "stage": name,
                "duration_ms": round(ms, 3),
                "stage_status": status,
                "attempt": self.attempt,
            },
        )

    def replay(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self.add(r["name"], r["started"], r["finished"], r["ms"], r["status"], r["detail"])
