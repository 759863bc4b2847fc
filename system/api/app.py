"""The operation server: uploads and inference jobs in, job status and dashboard data out."""

from __future__ import annotations

import json
import logging
import uuid
from contextlib import asynccontextmanager
from pathlib import Path, PurePath
from typing import Annotated

import psycopg
import redis
from botocore.exceptions import BotoCoreError
from fastapi import BackgroundTasks, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from system.api import dashboard
from system.api.deps import Deps
from system.api.metrics import make_registry
from system.api.schemas import InferenceAccepted, InferenceIn, ScoreAccepted, refusals
from system.config import Settings, get_settings
from system.pipelines.formats import ACCEPTED, ACCEPTED_HUMAN, sniff, unpacked_bytes
from system.pipelines.inference import DEFAULT_MODELS
from system.storage.aws import upload_key
from system.storage.events import OutboxPublisher
from system.storage.jobs import job_message, job_summary

log = logging.getLogger("system.api")
DASHBOARD_HTML = Path(__file__).parent / "static" / "dashboard.html"


class BodyLimit:
    """A body larger than the route's limit is a 413 with a message, before anything is parsed or stored: by its
    Content-Length when it declares one, else as the bytes arrive (a chunked body cannot slip past)."""

    def __init__(self, app, limit_for):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        too_large = f"the request body is larger than the limit of {limit} bytes"
        if declared.isdigit() and int(declared) > limit:
            return await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, counted, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        deps = Deps.connect(settings)
        app.state.deps = deps
        app.state.publisher = OutboxPublisher(settings.kafka_bootstrap_servers, deps.store)
        app.state.registry = make_registry(deps)
        log.info("api ready", extra={"queue": settings.sqs_queue_name, "transports": deps.queue.kinds})
        yield
        app.state.publisher.close()
        deps.close()

    app = FastAPI(title="Verisim operation server", version="0.1.0", lifespan=lifespan)
    app.include_router(dashboard.router)
    # an upload may carry a multipart envelope around its file; any other body is JSON
    app.add_middleware(
        BodyLimit,
        limit_for=lambda path: (
            settings.max_upload_bytes + 64 * 1024 if path == "/api/v1/scores" else settings.max_json_bytes
        ),
    )
    # the dashboard may be opened as a file (origin "null"): let it read the API
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET"], allow_headers=["*"])

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # FastAPI's own answer echoes each invalid input back, and an input such as NaN cannot be written as JSON:
        # the 422 became a 500. Say where and what is wrong; the input itself stays with the client.
        detail = [{"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(BotoCoreError)
    async def dependency_down(request: Request, exc: Exception):
        log.warning("dependency unavailable", extra={"path": request.url.path, "error": str(exc)})
        return JSONResponse({"detail": f"a dependency is unavailable: {type(exc).__name__}"}, status_code=503)

    def publish_later(background: BackgroundTasks, job_ids) -> None:
        def run():
            try:
                app.state.publisher.publish_jobs(job_ids)  # one claim, one produce-and-wait, one mark
            except Exception as exc:  # the worker's outbox sweep publishes them later
                log.warning("event publish deferred", extra={"count": len(job_ids), "error": str(exc)})

        background.add_task(run)

    def cache_best_effort(deps: Deps, rows) -> None:
        """Redis is a cache: a job is accepted without it (the worker writes the later states)."""
        try:
            deps.cache.put_many(rows)
        except redis.RedisError as exc:
            log.warning("status cache unavailable", extra={"count": len(rows), "error": str(exc)})

    def enqueue(rows, background: BackgroundTasks) -> list[str]:
        """The rows are committed: the jobs are accepted whatever the queue does now. Messages the queue does not
        take are flagged ``send_pending`` and sent by a worker's sweep; returns the ids left pending."""
        deps: Deps = app.state.deps
        cache_best_effort(deps, rows)  # "queued" is visible before any worker can touch the job
        try:
            pending = sorted(set(deps.queue.send([job_message(r) for r in rows])))
        except Exception as exc:  # the queue is down or slow: the sweep sends them once it answers
            log.warning("queue unavailable; jobs accepted, messages deferred", extra={"error": str(exc)})
            pending = [str(r["id"]) for r in rows]
        if pending:
            try:
                deps.store.mark_send_pending([uuid.UUID(j) for j in pending])
            except psycopg.Error as exc:  # the stale-job sweep (REQUEUE_AFTER_SECONDS) still sends them
                log.warning("could not flag deferred jobs", extra={"error": str(exc), "count": len(pending)})
        publish_later(background, [r["id"] for r in rows])
        return pending

    # -- jobs in -----------------------------------------------------------------------------------------------
    @app.post(
        "/api/v1/scores",
        status_code=202,
        tags=["jobs"],
        response_model=ScoreAccepted,
        responses=refusals(400, 413, 415, 422, 503),
    )
    def upload_score(
        background: BackgroundTasks,
        file: Annotated[UploadFile, File(description=f"the score: {ACCEPTED_HUMAN}")],
        title: Annotated[str | None, Form(max_length=300)] = None,
        target_language: Annotated[str | None, Form(max_length=50)] = None,
    ):
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
        deps: Deps = app.state.deps
        job_id = uuid.uuid4()
        key = upload_key(job_id)
        stem = PurePath((file.filename or "").replace("\x00", "")).stem[:200] or None
        deps.artifacts.put(key, data, ACCEPTED[fmt], {"job-id": str(job_id), "format": fmt})
        row = deps.store.create(
            "score",
            {
                "format": fmt,
                "bytes": len(data),
                "title": title,
                "filename_stem": stem,
                "target_language": target_language,
            },
            input_key=key,
            job_id=job_id,
        )
        deferred = enqueue([row], background)
        return {"job_id": str(job_id), "status": "queued", "format": fmt, "deferred": bool(deferred)}

    @app.post(
        "/api/v1/inference",
        status_code=202,
        tags=["jobs"],
        response_model=InferenceAccepted,
        responses=refusals(400, 413, 422, 503),
    )
    def submit_inference(body: InferenceIn, background: BackgroundTasks):
        deps: Deps = app.state.deps
        items = []
        for s in body.series:
            if len(s.values) > settings.max_series_length:
                raise HTTPException(413, f"a series is longer than {settings.max_series_length} values")
            params = s.model_dump()
            params["models"] = params["models"] or list(DEFAULT_MODELS)
            items.append(params)
        rows = deps.store.create_many("inference", items)
        deferred = enqueue(rows, background)
        return {"job_ids": [str(r["id"]) for r in rows], "count": len(rows), "deferred": deferred}

    # -- jobs out ----------------------------------------------------------------------------------------------
    @app.get("/api/v1/jobs/{job_id}", tags=["jobs"], responses=refusals(404, 422, 503))
    def get_job(job_id: uuid.UUID):
        deps: Deps = app.state.deps
        try:
            cached = deps.cache.get(job_id)
        except redis.RedisError:  # the cache is down: Postgres still knows
            cached = None
        if cached is not None:
            out = json.loads(cached)
            out["source"] = "redis"
            if out["status"] in ("completed", "completed_with_warnings", "failed") or out["kind"] == "score":
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

    def artifact_links(deps: Deps, row) -> dict[str, str]:
        links = {}
        if row.get("input_key"):
            links["input"] = deps.artifacts.presign(row["input_key"])
        for name, key in ((row.get("result") or {}).get("artifacts") or {}).items():
            links[name] = deps.artifacts.presign(key)
        return links

    # -- operations --------------------------------------------------------------------------------------------
    @app.get("/healthz", tags=["ops"])
    def healthz():
        return {"status": "ok"}

    @app.get(
        "/readyz", tags=["ops"], responses={503: {"description": "a dependency is not ready: `checks` says which"}}
    )
    def readyz():
        deps: Deps = app.state.deps
        checks = {}

        def check(name, fn):
            try:
                fn()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"error: {type(exc).__name__}: {exc}"[:300]

        def pg():
            with deps.store.pool.connection(timeout=3) as conn:
                conn.execute("SELECT 1")

        check("postgres", pg)
        check("redis", deps.cache.ping)
        check("sqs", deps.queue.sqs.depth)
        if deps.queue.celery is not None:
            check("celery", deps.queue.celery.depth)
        check("s3", lambda: deps.artifacts.s3.head_bucket(Bucket=deps.artifacts.bucket))
        check("kafka", lambda: app.state.publisher.producer.list_topics(timeout=3))
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
        )

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    def metrics():
        return Response(generate_latest(app.state.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    def dashboard_page():
        """The live dashboard (the same file works opened from disk, pointed at http://localhost:8000)."""
        return FileResponse(DASHBOARD_HTML, media_type="text/html")

    @app.get("/api", tags=["ops"])
    def index():
        return {
            "service": "verisim operation server",
            "dashboard": "/",
            "docs": "/docs",
            "health": "/healthz",
            "ready": "/readyz",
            "metrics": "/metrics",
            "dashboard_api": "/api/v1/dashboard/live-stats",
        }

    return app
