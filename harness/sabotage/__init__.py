"""Planted defects: the suite's own proof that its verdicts can turn red.

Each defect is planted from the suite's side — ``system/`` has no sabotage switch. Each names the verdicts it must
turn red (``reveals``: ledger problem kinds, content checks); a unit test fails when a verdict has no such twin, and
the sabotage tests plant each one and check that every verdict it names went red. Process defects patch the
system's classes inside a real worker or API process started through this package's entry point::

    python -m harness.sabotage <defect>[,<defect>…] system.worker --concurrency 4
    python -m harness.sabotage slow_api system.api --port 8000

(``SystemUnderTest.start_worker(sabotage=…)`` / ``start_api(sabotage=…)`` do that). Store defects (a row corrupted
after the fact, a stray DLQ message, a job no client submitted) are written straight into the stores, behind the
system's back: ``plant_in_stores(name, stack, job_ids, queue)``.
``python -m harness.sabotage --list`` prints the catalog.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.oracles.contract import TERMINAL

log = logging.getLogger("harness.sabotage")


@dataclass(frozen=True)
class Defect:
    name: str
    target: str  # "worker", "api" (the process it is planted in) or "store" (written into the stores)
    what: str
    plant: Callable[..., object]
    reveals: tuple[str, ...] = ()  # the verdicts it must turn red: ledger kinds, content checks, "slo: …", "window: …"

    @property
    def ledger_kinds(self) -> tuple[str, ...]:
        """What it reveals in the ledger's report (its SLO and chaos-window verdicts, ``slo: …``, ``window: …``,
        aside)."""
        return tuple(k for k in self.reveals if not k.startswith(("slo: ", "window: ")))


CATALOG: dict[str, Defect] = {}


def defect(name: str, target: str, what: str, reveals: tuple[str, ...] = ()):
    def register(fn: Callable[..., object]) -> Callable[..., object]:
        CATALOG[name] = Defect(name, target, what, fn, reveals)
        return fn

    return register


# verdict kinds whose twin is not a planted defect, and where it is
RECORDED_ONLY = {
    "topic_incomplete": "a Kafka read cut short by its deadline is the reader's state, not a store's: its twin is "
    "the recorded read in tests/unit/test_ledger.py",
    "window: the fault reached the system": "a fault that meets no traffic is the scenario's doing, not the "
    "system's: its twin is tests/sabotage/test_chaos_load_sabotage.py::test_a_fault_that_met_no_traffic_fails_its_window",
}


def missing_twins(catalog: dict[str, Defect], kinds) -> set[str]:
    """The verdict kinds no defect of ``catalog`` reveals (and that have no recorded twin in ``RECORDED_ONLY``)."""
    twinned = {k for d in catalog.values() for k in d.reveals}
    return set(kinds) - twinned - set(RECORDED_ONLY)


def plant_in_stores(name: str, stack, job_ids: list[str], queue: str) -> list[str]:
    """Plant the store defect ``name`` on the stores of ``stack`` (``job_ids``: finished jobs of the run on
    ``queue``); returns the job ids it touched (or made)."""
    d = CATALOG[name]
    if d.target != "store":
        raise ValueError(f"{name} is planted in a {d.target} process, not in the stores")
    touched = d.plant(stack, job_ids, queue)
    log.warning("SABOTAGE planted in the stores: %s — %s", name, d.what)
    return list(touched) if isinstance(touched, list) else []


def plant(names: str) -> list[Defect]:
    """Plant every defect named in ``names`` (comma-separated) in this process; unknown names are an error."""
    planted = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name not in CATALOG:
            raise SystemExit(f"unknown defect {name!r}; the catalog: {', '.join(sorted(CATALOG))}")
        if CATALOG[name].target == "store":
            raise SystemExit(f"{name} is a store defect: plant it with plant_in_stores, not in a process")
        CATALOG[name].plant()
        planted.append(CATALOG[name])
        log.warning("SABOTAGE planted: %s — %s", name, CATALOG[name].what)
    return planted


# -- in the worker -------------------------------------------------------------------------------------------------
@defect(
    "ack_before_commit",
    "worker",
    "deletes the SQS message as soon as it is received, before any commit",
    reveals=("not_terminal", "window: recover_s"),
)
def _ack_before_commit() -> None:
    from system.transports.sqs import SqsConsumer

    handle = SqsConsumer._handle

    def acked_first(self, messages):
        for message in messages:
            self._delete(message)  # the defect: the job is now only in this process's memory
        return handle(self, messages)

    SqsConsumer._handle = acked_first


@defect(
    "celery_early_ack",
    "worker",
    "the Celery worker acknowledges each task on receipt (Celery's default, "
    "acks_late off) and acknowledges a task whose worker process was lost",
    reveals=("not_terminal",),
)
def _celery_early_ack() -> None:
    from system.transports import celery

    config = celery.celery_config

    def early(settings):
        return {**config(settings), "task_acks_late": False, "task_reject_on_worker_lost": False}

    celery.celery_config = early


@defect(
    "no_worker_leases",
    "worker",
    "a Celery worker's lease sweep never re-sends a lost worker's running jobs: they wait for the broker's "
    "visibility timeout (the system's default: longer than any job)",
    reveals=("not_terminal",),
)
def _no_worker_leases() -> None:
    from system.storage.jobs import JobStore

    JobStore.reclaim_lost = lambda self, after_seconds: []


@defect(
    "no_stranded_search_after_broker_outage",
    "worker",
    "a worker that found the broker out of reach does not look for the tasks lost with it: their jobs wait queued "
    "for the stale-job sweep (REQUEUE_AFTER_SECONDS)",
    reveals=("not_terminal",),
)
def _no_stranded_search_after_broker_outage() -> None:
    from system.worker.processor import JobProcessor

    JobProcessor._broker_unreachable = lambda self: None


@defect(
    "cached_queue_stamp",
    "worker",
    "the worker reads the Celery queue's stamp once and trusts it ever after: a Redis that came back without its "
    "data is not noticed and its queue's jobs wait for the stale-job sweep",
    reveals=("not_terminal",),
)
def _cached_queue_stamp() -> None:
    from system.transports.celery import CeleryTransport

    read = CeleryTransport.created
    first: dict[str, str] = {}

    def cached(self):
        return first.setdefault(self.queue_name, read(self))

    CeleryTransport.created = cached


@defect(
    "no_clock_sync",
    "worker",
    "a worker never measures its clock against Postgres's: a worker whose clock is off stores its stages' times "
    "as its own clock reads them",
    reveals=("times_impossible",),
)
def _no_clock_sync() -> None:
    from system.storage.jobs import JobStore

    JobStore.sync_clock = lambda self: 0.0


@defect(
    "double_publish",
    "worker",
    "produces every outbox event to Kafka twice",
    reveals=("result_duplicate", "events_duplicate"),
)
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


@defect("skip_redis", "worker", "never writes a terminal status to Redis", reveals=("redis_disagrees",))
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


@defect(
    "never_finish",
    "worker",
    "an inference job's pipeline never returns (the job stays running)",
    reveals=("not_terminal",),
)
def _never_finish() -> None:
    from system.pipelines import inference

    def hang(jobs, window):
        while True:
            time.sleep(3600)

    inference.run_many = hang


@defect(
    "drop_terminal_event",
    "worker",
    "writes no job_events row for a job's terminal transition",
    reveals=("events_missing",),
)
def _drop_terminal_event() -> None:
    from system.storage.jobs import JobStore

    terminal_entries = JobStore._terminal_entries

    def without_status(self, row, model_results):
        return [e for e in terminal_entries(self, row, model_results) if e[1] != self.topics["events"]]

    JobStore._terminal_entries = without_status


@defect(
    "running_event_late",
    "worker",
    "holds each job's running event until the job's terminal events are in the log, then sends it (marking it "
    "published at once)",
    reveals=("events_order",),
)
def _running_event_late() -> None:
    import threading

    from system.storage.outbox import Outbox

    produce_and_wait, publish = Outbox._produce_and_wait, Outbox.publish
    held: dict = {}  # job id -> its running rows, waiting for the job's terminal events to be sent
    ended: set = set()  # jobs whose terminal event was sent: their running rows go once the publish is over
    lock = threading.Lock()

    def late(self, rows):
        running = [r for r in rows if r["payload"].get("status") == "running"]
        now = [r for r in rows if r["payload"].get("status") != "running"]
        with lock:
            for r in running:
                held.setdefault(r["job_id"], []).append(r)
        acked, failed, producer = produce_and_wait(self, now) if now else ([], [], self.producer)
        sent = set(acked)
        with lock:
            ended.update(
                r["job_id"] for r in now if r["id"] in sent and r["payload"].get("status") in ("completed", "failed")
            )
        return [*acked, *(r["id"] for r in running)], failed, producer

    def then_late(self, rows):
        marked = publish(self, rows)  # every event of the claim, its results and terminal event among them
        with lock:
            after = [r for job in list(ended) for r in held.pop(job, [])]
            ended.clear()
        if after:
            produce_and_wait(self, after)  # behind the terminal and result events of their jobs, every time
        return marked

    Outbox._produce_and_wait = late
    Outbox.publish = then_late


@defect(
    "ghost_model_event",
    "worker",
    "adds an inference_results event for a model the job never ran",
    reveals=("result_unexpected",),
)
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


@defect(
    "slow_worker",
    "worker",
    "every inference job takes 1 s longer (capacity falls more than 5x)",
    reveals=(
        "slo: capacity jobs/s / raw SQS ceiling",
        "slo: drain jobs/s / raw SQS ceiling",
        "slo: queue enqueue->start p95 ms",
        "slo: queue enqueue->done p95 ms",
        "slo: backlog drain s",
        "slo: backlog growth jobs/s",
        "window: done_p95_ms",
        "window: min_completed",
    ),
)
def _slow_worker() -> None:
    from system.pipelines import inference

    run_many = inference.run_many

    def slow(jobs, window):
        time.sleep(1.0 * len(jobs))
        return run_many(jobs, window)

    inference.run_many = slow


@defect(
    "flaky_first_attempt",
    "worker",
    "every inference job's first attempt fails as if a store had blipped (retried: each job needs two deliveries)",
    reveals=("slo: redelivered jobs",),
)
def _flaky_first_attempt() -> None:
    from system.pipelines import inference
    from system.pipelines.base import TransientJobError

    run_many = inference.run_many

    def flaky(jobs, window):
        out = run_many(jobs, window)
        return [
            TransientJobError("flaky", "a first attempt never succeeds") if (job.get("attempts") or 1) <= 1 else o
            for (job, _), o in zip(jobs, out, strict=True)
        ]

    inference.run_many = flaky


@defect(
    "slow_model",
    "worker",
    "every LSTM forward pass takes 0.1 s longer, every moving average 1 ms (the model paths 100x their raw speed)",
    reveals=("slo: model latency p95 / raw forward", "slo: model latency p95 ms"),
)
def _slow_model() -> None:
    from system.pipelines import lstm

    forecast_batch = lstm.forecast_batch

    def slow(model, windows, horizon):
        time.sleep(0.1)
        return forecast_batch(model, windows, horizon)

    lstm.forecast_batch = slow
    from system.pipelines import inference

    moving_average = inference.MODELS["moving_average"]

    def slow_average(values, horizon, window):
        time.sleep(0.001)
        return moving_average(values, horizon, window)

    inference.MODELS["moving_average"] = slow_average


# -- in the API ----------------------------------------------------------------------------------------------------
def _innermost(app):
    """``@app.middleware("http")``, but next to the routes rather than around every other middleware: a defect
    planted in the API acts where a slow or failing endpoint would, inside what the API measures of its requests."""
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware

    def add(dispatch):
        app.user_middleware.append(Middleware(BaseHTTPMiddleware, dispatch=dispatch))
        return dispatch

    return add


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

    def in_thread(fn, *args, seconds, memory_mb, task="reading the file"):
        return fn(*args)

    score.run_within_budget = in_thread


@defect(
    "slow_api",
    "api",
    "POST /api/v1/inference answers 0.4 s late",
    reveals=("slo: api p95 ms", "slo: api p99 ms", "window: api_p95_ms"),
)
def _slow_api() -> None:
    import asyncio

    def change(app):
        @_innermost(app)
        async def late(request, call_next):
            if request.method == "POST" and request.url.path == "/api/v1/inference":
                await asyncio.sleep(0.4)
            return await call_next(request)

    _wrap_app(change)


@defect(
    "refuse_after_accepting",
    "api",
    "answers 503 to job submissions it has already committed and enqueued",
    reveals=("refused_ran", "window: server_errors", "window: min_accepted"),
)
def _refuse_after_accepting() -> None:
    from fastapi.responses import JSONResponse

    def change(app):
        @_innermost(app)
        async def lie(request, call_next):
            response = await call_next(request)
            if request.method == "POST" and request.url.path.startswith("/api/v1/") and response.status_code == 202:
                return JSONResponse({"detail": "a dependency is unavailable"}, status_code=503)
            return response

    _wrap_app(change)


@defect(
    "ws_silent",
    "api",
    "the dashboard WebSocket says hello and then never pushes an event",
    reveals=("slo: api error rate",),
)
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


# -- in the worker: what jobs produce ----------------------------------------------------------------------------
@defect(
    "batch_mixup",
    "worker",
    "hands each LSTM forecast of a micro-batch to the next job of the batch",
    reveals=("prediction_wrong",),
)
def _batch_mixup() -> None:
    from system.pipelines.lstm import MicroBatcher

    forecast_many = MicroBatcher.forecast_many

    def rotated(self, items):
        reqs = forecast_many(self, items)
        outs = [r.out for r in reqs]
        if len(outs) > 1:
            for r, out in zip(reqs, outs[1:] + outs[:1], strict=True):
                r.out = out[: r.horizon] if out is not None and len(out) >= r.horizon else r.out
        return reqs

    MicroBatcher.forecast_many = rotated


@defect(
    "moving_average_off",
    "worker",
    "the moving average forecasts 0.1 % high",
    reveals=("prediction_wrong",),
)
def _moving_average_off() -> None:
    from system.pipelines import inference

    honest = inference.MODELS["moving_average"]
    inference.MODELS["moving_average"] = lambda values, horizon, window: [
        v * 1.001 for v in honest(values, horizon, window)
    ]


@defect("metrics_off", "worker", "reports every MAE and RMSE 1 % high", reveals=("metrics_wrong",))
def _metrics_off() -> None:
    from system.pipelines import inference

    honest = inference.errors

    def high(pred, actual):
        mae, rmse = honest(pred, actual)
        return (None if mae is None else mae * 1.01), (None if rmse is None else rmse * 1.01)

    inference.errors = high


@defect(
    "invented_failure",
    "worker",
    "fails every inference job 'with a reason' (error_code invented_reason) instead of running it",
    reveals=(
        "failed_unbudgeted",
        "slo: failed jobs",
        "slo: ledger and content problems (client journal)",
        "window: failed_jobs",
        "window: failed jobs outside the budget",
    ),
)
def _invented_failure() -> None:
    from system.pipelines import inference
    from system.pipelines.base import PermanentJobError

    def fail(jobs, window):
        return [PermanentJobError("invented_reason", "the worker decided not to") for _ in jobs]

    inference.run_many = fail


@defect(
    "drop_result_event", "worker", "writes no inference_results event for a job's LSTM", reveals=("result_missing",)
)
def _drop_result_event() -> None:
    from system.storage.jobs import JobStore

    terminal_entries = JobStore._terminal_entries

    def without_lstm(self, row, model_results):
        return [e for e in terminal_entries(self, row, model_results) if e[3].obj.get("model") != "lstm"]

    JobStore._terminal_entries = without_lstm


@defect(
    "silent_audio",
    "worker",
    "renders each score's MP3 as silence of the right length",
    reveals=("audio_wrong",),
)
def _silent_audio() -> None:
    # patched in the worker before its score jobs' forkserver is forked from it: the children that render inherit it
    from system.pipelines import score_audio

    render = score_audio.render_midi

    def silent(midi, soundfont, bitrate, quality=7):
        import lameenc

        honest = render(midi, soundfont, bitrate, quality)
        enc = lameenc.Encoder()
        enc.set_bit_rate(bitrate)
        enc.set_in_sample_rate(honest.sample_rate)
        enc.set_channels(2)
        enc.set_quality(7)
        zeros = bytes(4 * int(honest.seconds * honest.sample_rate))
        return type(honest)(bytes(enc.encode(zeros) + enc.flush()), honest.seconds, honest.sample_rate, 0.0)

    score_audio.render_midi = silent  # type: ignore[assignment]


@defect(
    "analysis_off",
    "worker",
    "reports one measure more than each score has",
    reveals=("analysis_wrong",),
)
def _analysis_off() -> None:
    from system.pipelines import score

    run = score.run

    def counted_wrong(job, timer, artifacts, llm, settings):
        out = run(job, timer, artifacts, llm, settings)
        if out.result and "analysis" in out.result:
            out.result["analysis"]["measures"] += 1
        return out

    score.run = counted_wrong


@defect(
    "truncated_mp3",
    "worker",
    "stores each MP3 without its last 1 000 bytes (the record keeps the full size)",
    reveals=("artifact_wrong",),
)
def _truncated_mp3() -> None:
    from system.storage.aws import Artifacts

    put = Artifacts.put

    def short(self, key, data, content_type, metadata=None):
        if content_type == "audio/mpeg":
            data = data[:-1000]
        return put(self, key, data, content_type, metadata)

    Artifacts.put = short


# -- in the API: what clients are told ----------------------------------------------------------------------------
@defect(
    "vanishing_job",
    "api",
    "answers 202 for every series of a request, then deletes the last one's job from every store, unsent",
    reveals=("lost",),
)
def _vanishing_job() -> None:
    from system.api import jobs as api_jobs

    enqueue = api_jobs.enqueue

    def all_but_last(deps, rows):
        if len(rows) < 2:
            return enqueue(deps, rows)
        victim = rows[-1]["id"]
        with deps.store.pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM outbox WHERE job_id = %s", (victim,))
            conn.execute("DELETE FROM jobs WHERE id = %s", (victim,))
        return enqueue(deps, rows[:-1])

    api_jobs.enqueue = all_but_last


@defect(
    "input_tampered",
    "api",
    "stores each series with its values in reverse order (the job runs on what was stored)",
    reveals=("input_differs",),
)
def _input_tampered() -> None:
    from system.storage.jobs import JobStore

    create_many = JobStore.create_many

    def reversed_values(self, kind, items):
        return create_many(self, kind, [{**p, "values": list(reversed(p["values"]))} for p in items])

    JobStore.create_many = reversed_values


# -- in the stores, behind the system's back (plant_in_stores) ---------------------------------------------------
def _sql(stack, sql: str, args=()) -> list[tuple]:
    import psycopg

    with psycopg.connect(stack.postgres.dsn) as conn:
        cur = conn.execute(sql, args)
        return cur.fetchall() if cur.description else []


def _inference_jobs(stack, job_ids: list[str]) -> list[str]:
    rows = _sql(
        stack, "SELECT id::text FROM jobs WHERE id = ANY(%s::uuid[]) AND kind = 'inference' ORDER BY id", (job_ids,)
    )
    if not rows:
        raise ValueError("the store defect needs a finished inference job of the run")
    return [r[0] for r in rows]


@defect("deleted_row", "store", "deletes an accepted job's row from Postgres", reveals=("lost",))
def _deleted_row(stack, job_ids, queue):
    victim = _inference_jobs(stack, job_ids)[0]
    _sql(stack, "DELETE FROM jobs WHERE id = %s", (victim,))
    return [victim]


@defect(
    "failed_row_without_reason",
    "store",
    "marks a completed job failed, with no reason",
    reveals=("failed_without_reason", "redis_disagrees"),
)
def _failed_row_without_reason(stack, job_ids, queue):
    victim = _inference_jobs(stack, job_ids)[0]
    _sql(stack, "UPDATE jobs SET status = 'failed', error_code = NULL WHERE id = %s", (victim,))
    return [victim]


@defect(
    "status_rewritten",
    "store",
    "rewrites a completed job's status to completed_with_warnings in Postgres alone",
    reveals=("result_status", "events_order", "redis_disagrees"),
)
def _status_rewritten(stack, job_ids, queue):
    victim = _inference_jobs(stack, job_ids)[0]
    _sql(stack, "UPDATE jobs SET status = 'completed_with_warnings' WHERE id = %s", (victim,))
    return [victim]


@defect("models_forgotten", "store", "empties a job's list of models", reveals=("no_models",))
def _models_forgotten(stack, job_ids, queue):
    victim = _inference_jobs(stack, job_ids)[0]
    _sql(stack, "UPDATE jobs SET params = jsonb_set(params, '{models}', '[]') WHERE id = %s", (victim,))
    return [victim]


@defect(
    "dlq_stray",
    "store",
    "sends a completed job's message to the DLQ",
    reveals=("dlq_unexplained", "slo: DLQ messages"),
)
def _dlq_stray(stack, job_ids, queue):
    victim = _inference_jobs(stack, job_ids)[0]
    sqs = stack.aws.client("sqs")
    url = sqs.get_queue_url(QueueName=f"{queue}-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"job_id": victim, "kind": "inference", "v": 1}))
    return [victim]


@defect(
    "unsubmitted_row",
    "store",
    "inserts a completed job on the run's queue that no client submitted",
    reveals=("unsubmitted",),
)
def _unsubmitted_row(stack, job_ids, queue):
    import uuid

    from psycopg.types.json import Jsonb

    ghost = str(uuid.uuid4())
    _sql(
        stack,
        "INSERT INTO jobs (id, kind, status, params, queue, attempts, started_at, finished_at) VALUES "
        "(%s, 'inference', 'completed', %s, %s, 1, now(), now())",
        (ghost, Jsonb({"pattern": "linear", "values": [1.0, 2.0], "models": ["moving_average"]}), queue),
    )
    return [ghost]


@defect(
    "prediction_rewritten",
    "store",
    "rewrites one job's LSTM forecast in inference_results alone (jobs.result and Kafka keep the original)",
    reveals=("copies_disagree",),
)
def _prediction_rewritten(stack, job_ids, queue):
    victim = _inference_jobs(stack, job_ids)[0]
    _sql(
        stack,
        "UPDATE inference_results SET prediction = (SELECT jsonb_agg(0) FROM jsonb_array_elements(prediction)) "
        "WHERE job_id = %s AND model_name = 'lstm'",
        (victim,),
    )
    return [victim]


@defect(
    "result_time_reversed",
    "store",
    "moves a job's result rows' completed_at to before their created_at",
    reveals=("times_impossible",),
)
def _result_time_reversed(stack, job_ids, queue):
    victim = _inference_jobs(stack, job_ids)[0]
    _sql(
        stack,
        "UPDATE inference_results SET completed_at = created_at - interval '1 second' WHERE job_id = %s",
        (victim,),
    )
    return [victim]


@defect(
    "attempts_bumped",
    "store",
    "adds an attempt to a job's row that no running event shows",
    reveals=("events_attempts",),
)
def _attempts_bumped(stack, job_ids, queue):
    victim = _inference_jobs(stack, job_ids)[0]
    _sql(stack, "UPDATE jobs SET attempts = attempts + 1 WHERE id = %s", (victim,))
    return [victim]
