"""The operation server: uploads and inference jobs in, job status and dashboard data out.

``create_app`` wires the routers — ``jobs`` (``/api/v1/scores``, ``/api/v1/inference``, ``/api/v1/jobs/{id}``),
``dashboard`` (``/api/v1/dashboard/…`` and the page at ``/``) and ``health`` (``/healthz``, ``/readyz``,
``/metrics``) — to the connections built at start-up (``system.wiring.Connections``), and turns every refusal into a clear 4xx and every
unavailable dependency into a 503 with a message.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import psycopg
import redis
from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from system.api import dashboard, health, jobs
from system.api.metrics import RequestMetrics, SystemCollector, registry_with_http
from system.config import Settings, get_settings
from system.wiring import Connections

# the error codes AWS answers a client it throttles with (botocore's standard retry mode retries these too)
THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestThrottled", "SlowDown", "TooManyRequestsException"}
)

log = logging.getLogger("system.api")


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
        deps = Connections.open(settings, settings.db_pool_size)
        app.state.deps = deps
        # the deployment's Kafka log marker (Outbox.restore_lost_log), set before its first event: a fresh queue has
        # nothing published, so this only creates it; later, its absence means the broker lost the log. Left to the
        # workers' first look, the marker came after the first jobs, and that look read the whole log to find none
        # of them lost (or, a Postgres kill cutting it short, never set it at all)
        try:
            deps.outbox.restore_lost_log()
        except Exception as exc:  # the broker or Postgres not answering yet: the workers look again every 2 s
            log.warning("kafka log check at start-up failed", extra={"error": str(exc)})
        collector = SystemCollector(deps)
        registry.register(collector)
        log.info("api ready", extra={"queue": settings.sqs_queue_name, "transports": deps.router.kinds})
        yield
        registry.unregister(collector)
        deps.close()

    registry, http_metrics = registry_with_http()
    app = FastAPI(title="Verisim operation server", version="0.1.0", lifespan=lifespan)
    app.state.registry = registry
    app.include_router(jobs.router)
    app.include_router(dashboard.router)
    app.include_router(dashboard.page)
    app.include_router(health.router)
    # an upload may carry a multipart envelope around its file; any other body is JSON
    app.add_middleware(
        BodyLimit,
        limit_for=lambda path: (
            settings.max_upload_bytes + 64 * 1024 if path == "/api/v1/scores" else settings.max_json_bytes
        ),
    )
    # the dashboard may be opened as a file (origin "null"): let it read the API
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET"], allow_headers=["*"])
    # outermost: every answer is timed and counted, a refusal by the middlewares above included
    app.add_middleware(RequestMetrics, metrics=http_metrics)

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

    @app.exception_handler(psycopg.errors.DiskFull)
    async def store_full(request: Request, exc: Exception):
        # Postgres is up but refused a write for want of space (SQLSTATE 53100): nothing was stored, and a retry
        # succeeds once space frees
        log.warning("job store out of disk space", extra={"path": request.url.path, "error": str(exc)})
        return JSONResponse(
            {"detail": "the job store is out of disk space: nothing was stored, retry later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(ClientError)
    async def dependency_refused(request: Request, exc: ClientError):
        # S3 or SQS answered an error that outlasted the SDK's retries: a 5xx or a throttle is the service's
        # trouble, not the client's (a 503 that says which); anything else is this server's own mistake
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if status < 500 and error.get("Code") not in THROTTLING_CODES:
            raise exc
        log.warning(
            "dependency unavailable", extra={"path": request.url.path, "error": str(exc), "code": error.get("Code")}
        )
        return JSONResponse(
            {"detail": f"a dependency is unavailable: {exc.operation_name} answered {error.get('Code')}"},
            status_code=503,
        )

    return app
