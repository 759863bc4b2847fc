"""Dashboard API: recent results, live statistics, model comparison, pattern distribution, and a WebSocket feed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import redis.asyncio as aioredis
from fastapi import APIRouter, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse

from system.api.schemas import refusals
from system.storage.status_cache import CHANNEL
from system.storage.views import JobViews

# every dashboard read needs Postgres (the queue view: the broker): a 503 with a message when it is away
router = APIRouter(prefix="/api/v1/dashboard", tags=["dashboard"], responses=refusals(422, 503))
log = logging.getLogger("system.api.dashboard")

page = APIRouter(include_in_schema=False)
DASHBOARD_HTML = Path(__file__).parent / "static" / "dashboard.html"


@page.get("/")
def dashboard_page():
    """The live dashboard (the same file works opened from disk, pointed at http://localhost:8000)."""
    return FileResponse(DASHBOARD_HTML, media_type="text/html")


def _views(request: Request) -> JobViews:
    return request.app.state.deps.views


@router.get("/recent")
def recent(request: Request, limit: int = Query(20, ge=1, le=500)):
    """Latest finished jobs: one row per inference model result, one per score job."""
    return {"results": _views(request).recent(limit)}


@router.get("/live-stats")
def live_stats(request: Request):
    row = _views(request).live_stats()
    finished = row["completed"] + row["failed"]
    row["success_rate"] = round(row["completed"] / finished, 4) if finished else None
    row["throughput_per_minute"] = row.pop("finished_last_minute")
    return row


@router.get("/model-comparison")
def model_comparison(request: Request):
    rows = _views(request).model_comparison()
    overall = [{k: v for k, v in r.items() if k != "pattern"} for r in rows if r["pattern"] is None]
    return {"models": overall, "by_pattern": [r for r in rows if r["pattern"] is not None]}


@router.get("/patterns")
def patterns(request: Request):
    return {"patterns": _views(request).patterns()}


@router.get("/throughput")
def throughput(
    request: Request, minutes: int = Query(10, ge=1, le=1440), bucket_seconds: int = Query(10, ge=1, le=3600)
):
    """Jobs finished per time bucket (completed / failed), oldest first, for the last ``minutes``."""
    return {"bucket_seconds": bucket_seconds, "buckets": _views(request).throughput(minutes, bucket_seconds)}


@router.get("/queue")
def queue(request: Request):
    """The job queue right now: visible, in flight, delayed, and given up on (DLQ), over every transport."""
    return request.app.state.deps.router.depth()


@router.get("/scores")
def scores(request: Request, limit: int = Query(10, ge=1, le=100)):
    """Latest score jobs: title, key, where they are, and their MP3 when there is one."""
    deps = request.app.state.deps
    rows = deps.views.scores(limit)
    for r in rows:
        key = r.pop("audio_key")
        r["audio_url"] = deps.artifacts.presign(key) if key else None
    return {"scores": rows}


@router.websocket("/ws")
async def feed(ws: WebSocket):
    """Every job state change, as the JSON kept in ``job:status:<id>``, pushed as it happens (Redis pub/sub)."""
    await ws.accept()
    client = aioredis.Redis.from_url(
        ws.app.state.deps.settings.redis_url, decode_responses=True, socket_connect_timeout=2
    )
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(CHANNEL)
    except Exception as exc:  # Redis down: say so and close as "try again later", never a server crash
        log.warning("live feed unavailable", extra={"error": str(exc)})
        with contextlib.suppress(Exception):
            await ws.send_json({"type": "unavailable", "reason": "the live feed (Redis) is unavailable; retry"})
            await ws.close(code=1013, reason="live feed unavailable")
        with contextlib.suppress(Exception):
            await client.aclose()
        return
    await ws.send_json({"type": "hello", "channel": CHANNEL})

    async def pump():
        async for message in pubsub.listen():
            if message["type"] == "message":
                await ws.send_text(message["data"])

    async def watch_client():
        while True:
            await ws.receive_text()  # raises WebSocketDisconnect when the client goes

    tasks = [asyncio.create_task(pump()), asyncio.create_task(watch_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except WebSocketDisconnect:
        pass
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(Exception):  # Redis may be the reason the feed ended
            await pubsub.unsubscribe(CHANNEL)
            await pubsub.aclose()
        with contextlib.suppress(Exception):
            await client.aclose()
        with contextlib.suppress(Exception):
            await ws.close(code=1013, reason="live feed interrupted")
