"""What the suite knows of the system from the outside, declared once: job statuses, the Redis status key, the Kafka
topics, the SQS message body. Written here, not imported from ``system/``: the oracle must not take the system's word
for its own vocabulary (a renamed status in the system turns the suite red instead of changing with it)."""

from __future__ import annotations

import json

QUEUED, RUNNING, COMPLETED, COMPLETED_WITH_WARNINGS, FAILED = (
    "queued",
    "running",
    "completed",
    "completed_with_warnings",
    "failed",
)
STATUSES = (QUEUED, RUNNING, COMPLETED, COMPLETED_WITH_WARNINGS, FAILED)
TERMINAL = (COMPLETED, COMPLETED_WITH_WARNINGS, FAILED)
OPEN = (QUEUED, RUNNING)  # not yet terminal
SUCCEEDED = (COMPLETED, COMPLETED_WITH_WARNINGS)
RANK = {"queued": 0, "running": 1, "completed": 2, "completed_with_warnings": 2, "failed": 2}  # only ever forward
RESULT_TOPICS = {"inference": "inference_results", "score": "score_results"}  # one event per job and model
EVENTS_TOPIC = "job_events"  # one event per status change


def sql_in(statuses: tuple[str, ...]) -> str:
    """``('a','b')`` for an SQL ``IN`` over the statuses above (never user input)."""
    return "(" + ",".join(f"'{s}'" for s in statuses) + ")"


def status_key(job_id) -> str:
    """Redis: the job's latest summary (JSON with at least ``status``)."""
    return f"job:status:{job_id}"


def job_message(job_id, kind: str) -> str:
    """An SQS message body the worker accepts for a job (what a duplicate delivery looks like)."""
    return json.dumps({"job_id": str(job_id), "kind": kind, "v": 1})
