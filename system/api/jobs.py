"""Jobs in and out: score uploads and inference series are accepted (committed in Postgres, then queued), and a
job's status is read from Redis over Postgres."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import PurePath
from typing import Annotated

import psycopg
import redis
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile

from system.api.schemas import InferenceAccepted, InferenceIn, ScoreAccepted, refusals
from system.jobs.lifecycle import TERMINAL, Kind, Status, new_job_id
from system.jobs.shapes import job_message, job_summary
from system.pipelines.formats import ACCEPTED, ACCEPTED_HUMAN, sniff, unpacked_bytes
from system.pipelines.inference import DEFAULT_MODELS
from system.storage.aws import upload_key
from system.wiring import Connections

router = APIRouter(prefix="/api/v1", tags=["jobs"])
log = logging.getLogger("system.api")


def deps_of(request: Request) -> Connections:
    return request.app.state.deps


AppDeps = Annotated[Connections, Depends(deps_of)]


# -- jobs in ------------------------------------------------------------------------------------------------------
@router.post("/scores", status_code=202, response_model=ScoreAccepted, responses=refusals(400, 413, 415, 422, 503))
def upload_score(
    request: Request,
    deps: AppDeps,
    file: Annotated[UploadFile, File(description=f"the score: {ACCEPTED_HUMAN}")],
    title: Annotated[str | None, Form(max_length=300)] = None,
    target_language: Annotated[str | None, Form(max_length=50)] = None,
):
    settings = deps.settings
    limit = settings.max_upload_bytes
    data = file.file.read(limit + 1)
    if not data:
        raise HTTPException(400, "the uploaded file is empty")
    if len(data) > limit:
        raise HTTPException(413, f"the upload is larger than the limit of {limit} bytes")
    for name, text in (("title", title), ("target_language", target_language)):
        if text and "\x00" in text:
            raise HTTPException(422, f"{name} must not contain NUL characters (\\u0000)")
    fmt = sniff(data)
    if fmt is None:
        raise HTTPException(415, f"unsupported file content (the name is not trusted); accepted: {ACCEPTED_HUMAN}")
    unpacked = unpacked_bytes(data)
    if unpacked > settings.max_unpacked_bytes:
        raise HTTPException(
            413, f"the archive unpacks to {unpacked} bytes, over the limit of {settings.max_unpacked_bytes} bytes"
        )
    job_id = new_job_id()
    key = upload_key(job_id)
    stem = PurePath((file.filename or "").replace("\x00", "")).stem[:200] or None
    deps.artifacts.put(key, data, ACCEPTED[fmt], {"job-id": str(job_id), "format": fmt})
    row = deps.store.create(
        Kind.SCORE,
        {"format": fmt, "bytes": len(data), "title": title, "filename_stem": stem, "target_language": target_language},
        input_key=key,
        job_id=job_id,
    )
    deferred = enqueue(deps, [row])
    return {"job_id": str(job_id), "status": Status.QUEUED.value, "format": fmt, "deferred": bool(deferred)}


@router.post("/inference", status_code=202, response_model=InferenceAccepted, responses=refusals(400, 413, 422, 503))
def submit_inference(request: Request, deps: AppDeps, body: InferenceIn):
    longest = deps.settings.max_series_length
    items = []
    for s in body.series:
        if len(s.values) > longest:
            raise HTTPException(413, f"a series is longer than {longest} values")
        params = s.model_dump()
        params["models"] = params["models"] or list(DEFAULT_MODELS)
        items.append(params)
    rows = deps.store.create_many(Kind.INFERENCE, items)
    deferred = enqueue(deps, rows)
    return {"job_ids": [str(r["id"]) for r in rows], "count": len(rows), "deferred": deferred}


def enqueue(deps: Connections, rows) -> list[str]:
    """The rows are committed: the jobs are accepted whatever the queue does now. Messages the queue does not take
    are flagged ``send_pending`` and sent by a worker's sweep; returns the ids left pending."""
    try:  # Redis is a cache: a job is accepted without it (the worker writes the later states)
        deps.cache.put_many(rows)  # "queued" is visible before any worker can touch the job
    except redis.RedisError as exc:
        log.warning("status cache unavailable", extra={"count": len(rows), "error": str(exc)})
    try:
        pending = sorted(set(deps.router.send([job_message(r) for r in rows])))
    except Exception as exc:  # the queue is down or slow: the sweep sends them once it answers
        log.warning("queue unavailable; jobs accepted, messages deferred", extra={"error": str(exc)})
        pending = [str(r["id"]) for r in rows]
    if pending:
        try:
            deps.store.mark_send_pending([uuid.UUID(j) for j in pending])
        except psycopg.Error as exc:  # the stale-job sweep (REQUEUE_AFTER_SECONDS) still sends them
            log.warning("could not flag deferred jobs", extra={"error": str(exc), "count": len(pending)})
    outbox = deps.outbox
    for r in rows:  # their "queued" events: published in the background, together with other requests' events
        outbox.publish_soon(r["id"])
    return pending


# -- jobs out -----------------------------------------------------------------------------------------------------
@router.get("/jobs/{job_id}", responses=refusals(404, 422, 503))
def get_job(deps: AppDeps, job_id: uuid.UUID):
    try:
        cached = deps.cache.get(job_id)
    except redis.RedisError:  # the cache is down: Postgres still knows
        cached = None
    if cached is not None:
        out = json.loads(cached)
        out["source"] = "redis"
        if out["status"] in TERMINAL or out["kind"] == Kind.SCORE:
            row = deps.store.get(job_id)
            if row is not None:
                out["artifacts"] = artifact_links(deps, row)
        return out
    row = deps.store.get(job_id)
    if row is None:
        raise HTTPException(404, f"no job with id {job_id}")
    out = job_summary(row)
    out.update(source="postgres", stages=row["stages"], models=row["models"], artifacts=artifact_links(deps, row))
    return out


def artifact_links(deps: Connections, row) -> dict[str, str]:
    links = {}
    if row.get("input_key"):
        links["input"] = deps.artifacts.presign(row["input_key"])
    for name, key in ((row.get("result") or {}).get("artifacts") or {}).items():
        links[name] = deps.artifacts.presign(key)
    return links
