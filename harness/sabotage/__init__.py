"""Planted defects: the suite's own proof that its verdicts can turn red.

Each defect is planted from the suite's side — ``system/`` has no sabotage switch. Process defects patch the
system's classes inside a real worker or API process started through this package's entry point::

    python -m harness.sabotage <defect>[,<defect>…] system.worker --concurrency 4
    python -m harness.sabotage slow_api system.api --port 8000

(``SystemUnderTest.start_worker(sabotage=…)`` / ``start_api(sabotage=…)`` do that). Store defects
(a row corrupted after the fact, a stray DLQ message) are written straight into the stores by the tests.
``python -m harness.sabotage --list`` prints the catalog.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.contract import TERMINAL

log = logging.getLogger("harness.sabotage")


@dataclass(frozen=True)
class Defect:
    name: str
    target: str  # "worker" or "api": the process it is planted in
    what: str
    plant: Callable[[], None]


CATALOG: dict[str, Defect] = {}


def defect(name: str, target: str, what: str):
    def register(fn: Callable[[], None]) -> Callable[[], None]:
        CATALOG[name] = Defect(name, target, what, fn)
        return fn

    return register


def plant(names: str) -> list[Defect]:
    """Plant every defect named in ``names`` (comma-separated) in this process; unknown names are an error."""
    planted = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name not in CATALOG:
            raise SystemExit(f"unknown defect {name!r}; the catalog: {', '.join(sorted(CATALOG))}")
        CATALOG[name].plant()
        planted.append(CATALOG[name])
        log.warning("SABOTAGE planted: %s — %s", name, CATALOG[name].what)
    return planted


# -- in the worker -------------------------------------------------------------------------------------------------
@defect("ack_before_commit", "worker", "deletes the SQS message as soon as it is received, before any commit")
def _ack_before_commit() -> None:
    from system.worker.runner import Worker

    handle = Worker._handle

    def acked_first(self, messages):
        for message in messages:
            self._delete(message)  # the defect: the job is now only in this process's memory
        return handle(self, messages)

    Worker._handle = acked_first


@defect(
    "celery_early_ack",
    "worker",
    "the Celery worker acknowledges each task on receipt (Celery's default, "
    "acks_late off) and acknowledges a task whose worker process was lost",
)
def _celery_early_ack() -> None:
    from system.storage import queues

    config = queues.celery_config

    def early(settings):
        return {**config(settings), "task_acks_late": False, "task_reject_on_worker_lost": False}

    queues.celery_config = early


@defect("double_publish", "worker", "produces every outbox event to Kafka twice")
def _double_publish() -> None:
    from system.storage.outbox import Outbox

    publish = Outbox.publish

    def twice(self, rows):
        done = publish(self, rows)
        for row in rows:
            self.producer.produce(
                row["topic"], key=row["key"], value=json.dumps({**row["payload"], "event_id": row["id"]}, default=str)
            )
        self.producer.flush(10)
        return done

    Outbox.publish = twice


@defect("skip_redis", "worker", "never writes a terminal status to Redis")
def _skip_redis() -> None:
    from system.storage.status_cache import StatusCache

    put = StatusCache.put

    put_many = StatusCache.put_many

    def put_unless_terminal(self, row):
        if row["status"] in TERMINAL:
            return None
        return put(self, row)

    def put_many_unless_terminal(self, rows):
        return put_many(self, [r for r in rows if r["status"] not in TERMINAL])

    StatusCache.put = put_unless_terminal
    StatusCache.put_many = put_many_unless_terminal


@defect("never_finish", "worker", "an inference job's pipeline never returns (the job stays running)")
def _never_finish() -> None:
    from system.pipelines import inference

    def hang(jobs, window):
        while True:
            time.sleep(3600)

    inference.run_many = hang


@defect("drop_terminal_event", "worker", "writes no job_events row for a job's terminal transition")
def _drop_terminal_event() -> None:
    from system.storage.jobs import JobStore

    terminal_entries = JobStore._terminal_entries

    def without_status(self, row, model_results):
        return [e for e in terminal_entries(self, row, model_results) if e[1] != self.topics["events"]]

    JobStore._terminal_entries = without_status


@defect("ghost_model_event", "worker", "adds an inference_results event for a model the job never ran")
def _ghost_model_event() -> None:
    from psycopg.types.json import Jsonb

    from system.storage.jobs import JobStore

    terminal_entries = JobStore._terminal_entries

    def with_ghost(self, row, model_results):
        entries = terminal_entries(self, row, model_results)
        if row["kind"] == "inference":
            ghost = {"job_id": str(row["id"]), "status": row["status"], "model": "ghost"}
            entries.append((row["id"], self.topics["inference"], str(row["id"]), Jsonb(ghost)))
        return entries

    JobStore._terminal_entries = with_ghost


@defect("slow_worker", "worker", "every inference job takes 1 s longer (capacity falls more than 5x)")
def _slow_worker() -> None:
    from system.pipelines import inference

    run_many = inference.run_many

    def slow(jobs, window):
        time.sleep(1.0 * len(jobs))
        return run_many(jobs, window)

    inference.run_many = slow


# -- in the API ----------------------------------------------------------------------------------------------------
def _wrap_app(change: Callable) -> None:
    import system.api.app as app_module

    create_app = app_module.create_app

    def create_sabotaged_app(settings=None):
        app = create_app(settings)
        change(app)
        return app

    app_module.create_app = create_sabotaged_app  # uvicorn's factory string resolves to this attribute


@defect("no_job_budget", "worker", "score jobs are read in the worker's own thread: no time or memory budget")
def _no_job_budget() -> None:
    from system.pipelines import score

    def in_thread(fn, *args, seconds, memory_mb):
        return fn(*args)

    score.run_within_budget = in_thread


@defect("slow_api", "api", "POST /api/v1/inference answers 0.4 s late")
def _slow_api() -> None:
    import asyncio

    def change(app):
        @app.middleware("http")
        async def late(request, call_next):
            if request.method == "POST" and request.url.path == "/api/v1/inference":
                await asyncio.sleep(0.4)
            return await call_next(request)

    _wrap_app(change)


@defect("refuse_after_accepting", "api", "answers 503 to job submissions it has already committed and enqueued")
def _refuse_after_accepting() -> None:
    from fastapi.responses import JSONResponse

    def change(app):
        @app.middleware("http")
        async def lie(request, call_next):
            response = await call_next(request)
            if request.method == "POST" and request.url.path.startswith("/api/v1/") and response.status_code == 202:
                return JSONResponse({"detail": "a dependency is unavailable"}, status_code=503)
            return response

    _wrap_app(change)


@defect("ws_silent", "api", "the dashboard WebSocket says hello and then never pushes an event")
def _ws_silent() -> None:
    from fastapi import WebSocket, WebSocketDisconnect

    def change(app):
        @app.websocket("/api/v1/dashboard/ws")
        async def silent(ws: WebSocket):
            await ws.accept()
            await ws.send_json({"type": "hello", "channel": "jobs:events"})
            try:
                while True:
                    await ws.receive_text()
            except WebSocketDisconnect:
                pass

        # routes match in order, and the dashboard's own router may be one nested entry: go first
        app.router.routes.insert(0, app.router.routes.pop())

    _wrap_app(change)
