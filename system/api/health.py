"""Operations: liveness, readiness (each dependency checked), Prometheus metrics and the API's index."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz():
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is not ready: `checks` says which"}})
def readyz(request: Request):
    deps = request.app.state.deps
    checks = {}

    def check(name, fn):
        try:
            fn()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}: {exc}"[:300]

    check("postgres", deps.views.ping)
    check("redis", deps.cache.ping)
    for name, transport in deps.router.transports.items():
        check(name, transport.depth)
    check("s3", lambda: deps.artifacts.s3.head_bucket(Bucket=deps.artifacts.bucket))
    check("kafka", lambda: deps.outbox.producer.list_topics(timeout=3))
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request):
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api")
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
