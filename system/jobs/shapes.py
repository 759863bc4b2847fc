"""Every shape a job takes outside Postgres, built here and nowhere else: the queue message, the status summary kept in
Redis and pushed to the dashboard, the status event and the result events on Kafka. Each takes a ``jobs`` row (a
dict, as the store returns it)."""

from __future__ import annotations

import json
from typing import Any

from system.jobs.lifecycle import Kind

MESSAGE_VERSION = 1

# The status event's fields: (name, how Python reads it off a row, the same in SQL over a jobs row). The claim writes
# its "running" events inside its UPDATE statement (``status_event_sql``), every other change in Python
# (``status_event``): both from this one list.
_STATUS_EVENT: tuple[tuple[str, Any, str], ...] = (
    ("job_id", lambda r: str(r["id"]), "id::text"),
    ("kind", lambda r: r["kind"], "kind"),
    ("status", None, "%(status)s::text"),  # the status the event announces (given)
    ("attempts", lambda r: r["attempts"], "attempts"),
    ("at", lambda r: r["updated_at"].isoformat(), "updated_at"),
)


def job_message(row: dict[str, Any]) -> dict[str, Any]:
    """The queue message of a job, on every transport (the API, the pending sweep and the stale sweep send this)."""
    return {"job_id": str(row["id"]), "kind": row["kind"], "v": MESSAGE_VERSION}


def status_event(row: dict[str, Any], status: str) -> dict[str, Any]:
    """The event on the events topic announcing that the job is now in ``status``."""
    return {name: (str(status) if read is None else read(row)) for name, read, _ in _STATUS_EVENT}


def status_event_sql() -> str:
    """``status_event`` as an SQL expression over a jobs row (the status as the parameter ``%(status)s``)."""
    return "jsonb_build_object(" + ", ".join(f"'{name}', {expr}" for name, _, expr in _STATUS_EVENT) + ")"


def result_events(row: dict[str, Any], model_results: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """A finished job's result events, as (topic kind, payload): one per model for an inference job (on the
    ``inference`` topic), its result for a score job (on the ``score`` topic)."""
    base = {
        "job_id": str(row["id"]),
        "status": row["status"],
        "error_code": row["error_code"],
        "error_message": row["error_message"],
        "finished_at": row["finished_at"].isoformat(),
    }
    if row["kind"] != Kind.INFERENCE:
        return [(Kind.SCORE.value, {**base, "result": row["result"]})]
    models = model_results or [{"model": m} for m in row["params"].get("models", [])]
    return [
        (
            Kind.INFERENCE.value,
            {
                **base,
                "model": m["model"],
                "pattern": row["params"].get("pattern"),
                "prediction": m.get("prediction"),
                "inference_ms": m.get("inference_ms"),
                "mae": m.get("mae"),
                "rmse": m.get("rmse"),
            },
        )
        for m in models
    ]


def job_summary(row: dict[str, Any]) -> dict[str, Any]:
    """The JSON kept in Redis ``job:status:<id>``, pushed over pub/sub and answered by the status endpoint."""

    def iso(v):
        return v.isoformat() if v is not None else None

    return {
        "job_id": str(row["id"]),
        "kind": row["kind"],
        "status": row["status"],
        "pattern": row["params"].get("pattern") if row["kind"] == Kind.INFERENCE else None,
        "attempts": row["attempts"],
        "error_code": row["error_code"],
        "error_message": row["error_message"],
        "enqueued_at": iso(row["enqueued_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "updated_at": iso(row["updated_at"]),
        "result": row["result"],
    }


def dumps(obj: Any) -> str:
    """Compact JSON, as the summaries are stored."""
    return json.dumps(obj, default=str, separators=(",", ":"))
