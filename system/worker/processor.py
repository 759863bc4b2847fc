"""Running jobs, whatever the transport: ``JobProcessor`` takes delivered messages to their jobs' outcomes and says
what becomes of each message (``system.jobs.lifecycle.Disposition``); the transports' worker programs
(``system.transports``) receive the messages and settle them as it says. Nothing here knows a transport: re-sends go
through the connections' router. No result is lost or doubled:

* A message is acknowledged only after the job's terminal state is committed in Postgres with its events in the
  outbox (Kafka gets them from there, in the background, in batches; a sweep sends what a dead worker left) and its
  status written to Redis.
* Idempotent by job id: a redelivered message for a finished job publishes anything left unpublished and is acked.
* Transient errors ask for a retry with exponential backoff; on the last attempt the transport allows, the job is
  marked failed with the reason and the message is dead-lettered.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from system.config import Settings
from system.jobs.lifecycle import ACK, DEAD_LETTER, Action, Disposition, Kind, Status
from system.jobs.shapes import job_message
from system.pipelines import budget, inference, score
from system.pipelines.base import JobError, PermanentJobError, PipelineResult, StageTimer
from system.storage.jobs import Claim, Finish
from system.transports.base import FindsStranded, Transport
from system.wiring import Connections
from system.worker.metrics import WorkerMetrics

log = logging.getLogger("system.worker")
MAX_BACKOFF_SECONDS = 300
CLOCK_SYNC_S = 30.0  # how often a worker measures its clock against Postgres's (the stage times it writes)


class JobProcessor:
    """The job store, status cache, outbox and pipelines one worker process shares between its jobs."""

    def __init__(
        self, settings: Settings, concurrency: int | None = None, transports: dict[str, Transport] | None = None
    ):
        """``transports``: those the worker program already opened (the router opens the others it needs)."""
        self.settings = settings
        self.concurrency = concurrency or settings.worker_concurrency
        self.connections = Connections.open(settings, self.concurrency + 2, transports=transports)
        self.store, self.cache = self.connections.store, self.connections.cache
        self.router = self.connections.router  # re-sends go to each kind's transport
        self.artifacts = self.connections.artifacts
        self.outbox = self.connections.outbox
        self.llm: Any = None  # the OpenAI client, made by _warm_up or at the first score job (``_llm``)
        self._llm_lock = threading.Lock()
        # the kinds of job this worker's transports bring it: those whose transport (INFERENCE_TRANSPORT,
        # SCORE_TRANSPORT) is one it receives from (every kind when it was given none)
        own = set(transports or self.router.transports)
        self.kinds_received = {kind for kind, name in self.router.kinds.items() if name in own}
        self._warm_up()
        self.stop_event = threading.Event()
        # a lease of its own where its transport cannot renew a delivery: a worker id claims carry (host:pid:start).
        # Each start of the program is a worker of its own, a restart in the same process too (the Celery worker's,
        # after an unrecoverable error): the lease of the one before lapses, and its jobs and tasks are sent again
        leased = any(not t.leases_renewed for t in (transports or {}).values())
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}" if leased else None
        if self.worker_id is not None:
            self.store.beat(self.worker_id)  # the lease exists before the first claim that names it
        self.cache_backlog: set[uuid.UUID] = set()  # statuses Redis missed (it was down): rewritten from Postgres
        self.processed = 0
        self._stranded_until = 0.0  # until when the tasks lost workers took are looked for (``_leases``)
        # the jobs the worker program holds (received, not settled): by default those inside process_many; a
        # program that holds more (the SQS consumer's prefetched and held messages) sets its own count
        self.in_hand = 0
        self._in_hand_lock = threading.Lock()
        self.inflight_count: Callable[[], int] = lambda: self.in_hand
        self.metrics = WorkerMetrics(
            settings.sqs_queue_name, "+".join(transports or self.router.transports), lambda: self.inflight_count()
        )
        self.metrics.serve(settings.worker_metrics_host, settings.worker_metrics_port)

    def _warm_up(self) -> None:
        """Load now what the kinds of job this worker receives need, so the first job does not pay for it. A kind its
        transports never bring (the seeds' layout: score jobs on SQS, inference jobs on Celery) costs it nothing at
        start: the model or the score reader is loaded at such a job's arrival, should one ever come."""
        t0 = time.perf_counter()
        if Kind.INFERENCE in self.kinds_received:
            inference.lstm_batcher()
        if Kind.SCORE in self.kinds_received:
            budget.warm_up()  # the score jobs' forkserver imports music21 (0.5-1 s)
            self._llm()
        log.info(
            "models loaded",
            extra={"seconds": round(time.perf_counter() - t0, 3), "kinds": sorted(self.kinds_received)},
        )

    def _llm(self) -> Any:
        """The OpenAI client, made once. Made before the worker answers where it receives score jobs: made at the first
        translation, the SDK's import (1-3 s of Python holding the GIL) would run beside this process's inference
        threads and inside that score job's time."""
        with self._llm_lock:
            if self.llm is None:
                import openai

                llm = openai.OpenAI(
                    base_url=self.settings.openai_api_base,
                    api_key=self.settings.openai_api_key,
                    timeout=self.settings.openai_timeout_seconds,
                    max_retries=self.settings.openai_max_retries,
                )
                llm.chat.completions  # noqa: B018 - the SDK imports its resources at first use (~0.6 s)
                self.llm = llm
            return self.llm

    # -- the loop -----------------------------------------------------------------------------------------------
    def housekeeping(self) -> None:
        """Repair Redis statuses, announce this worker, send what the queue did not take, notice a queue or Kafka log
        that was lost (every 2 s), sweep the outbox (every 10 s; every second while Kafka is failing, so events flow as
        soon as it is back). Its own thread: these may wait on a dependency that is down."""
        last_sweep = last_requeue = last_recovery = last_reconcile = 0.0
        threading.Thread(target=self._lease_loop, name="leases", daemon=True).start()
        while not self.stop_event.wait(1.0):
            try:
                self._repair_cache()
                self.cache.client.set(
                    f"worker:heartbeat:{os.getpid()}",
                    json.dumps({"pid": os.getpid(), "inflight": self.inflight_count(), "processed": self.processed}),
                    ex=5,
                )
            except Exception as exc:
                log.warning("status cache still unavailable", extra={"error": str(exc)})
            try:
                sent = self.store.send_pending(self.router.send)
                if sent:
                    log.warning("sent jobs the queue had not taken at submission", extra={"count": sent})
            except Exception as exc:
                log.warning("pending-send sweep failed", extra={"error": str(exc)})
            if time.monotonic() - last_recovery >= 2.0:
                last_recovery = time.monotonic()
                self._recover_lost_stores()
            if time.monotonic() - last_reconcile >= 5.0:
                last_reconcile = time.monotonic()
                try:
                    self._reconcile_cache()
                except Exception as exc:
                    log.debug("status cache reconcile failed", extra={"error": str(exc)})
            if time.monotonic() - last_requeue > self.settings.requeue_after_seconds / 2:
                last_requeue = time.monotonic()
                try:
                    self._requeue_stale()
                except Exception as exc:
                    log.warning("requeue sweep failed", extra={"error": str(exc)})
            failing = time.monotonic() < self.outbox.open_until + 60
            if time.monotonic() - last_sweep > (1.0 if failing else 10.0):
                last_sweep = time.monotonic()
                try:
                    self.outbox.sweep(older_than_seconds=0 if failing else 10)
                except Exception as exc:
                    log.warning("outbox sweep failed", extra={"error": str(exc)})

    def _lease_loop(self) -> None:
        """Every second: this worker's lease, and the lost workers' jobs; every ``CLOCK_SYNC_S`` its clock against
        Postgres's. A thread of its own, like the SQS visibility heartbeat: a sweep that waits on a dependency must
        not let this worker's lease lapse."""
        leasing_since: float | None = None  # since when this worker's own lease has been renewed without a miss
        synced = -math.inf
        while True:
            leasing_since = self._leases(leasing_since)
            if time.monotonic() - synced >= CLOCK_SYNC_S:
                synced = time.monotonic()
                self._sync_clock()
            if self.stop_event.wait(1.0):
                return

    def _sync_clock(self) -> None:
        try:
            skew = self.store.sync_clock()
        except Exception as exc:
            log.debug("clock sync failed", extra={"error": str(exc)})
            return
        if abs(skew) >= 1.0:
            log.warning(
                "this worker's clock is off Postgres's: stage times are corrected", extra={"skew_s": round(skew, 3)}
            )

    def _leases(self, leasing_since: float | None) -> float | None:
        """Renew this worker's lease (if it keeps one), then re-send the running jobs of workers whose leases went
        stale. A worker sweeps only once its own lease has been renewed for a whole period: after Postgres was away
        every lease is stale at first, its owners alive. Returns since when this worker's renewals have held."""
        now = time.monotonic()
        if self.worker_id is not None:
            try:
                self.store.beat(self.worker_id)
            except Exception as exc:
                log.warning("worker lease not renewed", extra={"error": str(exc)})
                return None
        leasing_since = now if leasing_since is None else leasing_since
        after = self.settings.worker_lost_after_seconds
        if now - leasing_since < after:
            return leasing_since
        try:
            lost = self.store.reclaim_lost(after)
            for worker, jobs in lost:
                log.warning(
                    "a worker went silent: re-sending the jobs it was running",
                    extra={"worker": worker, "count": jobs, "after_s": after},
                )
            if lost:
                # the tasks a lost worker took shortly before it went are too young to tell from a live worker's
                # at first (queued and received less than ``after`` ago): look again every second until they are not
                self._stranded_until = now + after + 2
            if now < self._stranded_until:
                self._resend_stranded(after)
        except Exception as exc:
            log.warning("lost-worker sweep failed", extra={"error": str(exc)})
        return leasing_since

    def _resend_stranded(self, after: float) -> None:
        """The queued jobs whose task no live worker can be holding and the broker does not hold either: a lost
        worker had taken it but not begun (its lease names only the jobs it claimed), or the broker went away while
        a worker was taking it (``_broker_unreachable``). Sent again (a duplicate is harmless: a job is claimed by
        id). Where the transport cannot tell (it is not ``FindsStranded``), the stale-job sweep finds them later."""
        asked = {n: t.stranded for n, t in self.router.transports.items() if isinstance(t, FindsStranded)}
        waiting = self.store.queued_ids(after) if asked else []
        for name, stranded in asked.items():
            queued = [str(i) for i, kind in waiting if self.router.transport(kind) == name]
            found = stranded(queued, after) if queued else []
            flagged = self.store.flag_for_sending([uuid.UUID(i) for i in found])
            if flagged:
                log.warning(
                    "re-sending queued jobs whose task is nowhere (a lost worker took it, or a lost broker)",
                    extra={"count": flagged},
                )

    def _recover_lost_stores(self) -> None:
        """An emulator or broker that keeps its data in memory loses it when it restarts. The queue: its jobs are
        flagged for re-sending (see ``JobStore.note_queue_epoch``). The Kafka log: restored from the outbox (see
        ``Outbox.restore_lost_log``). Each costs one request when nothing was lost."""
        try:
            created = self.router.created()
        except Exception as exc:
            self._broker_unreachable()
            log.debug("queue epoch check failed", extra={"error": str(exc)})
            created = None
        try:
            flagged = self.store.note_queue_epoch(created) if created is not None else 0
            if flagged:
                log.warning(
                    "the queue was recreated (its messages are gone): re-sending its queued jobs",
                    extra={"count": flagged},
                )
        except Exception as exc:
            log.debug("queue epoch check failed", extra={"error": str(exc)})
        try:
            self.outbox.restore_lost_log()
        except Exception as exc:
            log.debug("kafka log check failed", extra={"error": str(exc)})

    def _broker_unreachable(self) -> None:
        """A task a worker took from the broker as it went away may be gone: kombu's Redis transport takes a task off
        the list and then records it as unacknowledged, two commands, and a broker lost between them leaves the task
        in no list and in no worker's hands (its job stays queued). Until the broker has answered again for a lease
        period, the queued jobs whose task is nowhere are looked for every second (``_resend_stranded``), rather
        than waiting for the stale-job sweep (``REQUEUE_AFTER_SECONDS``)."""
        self._stranded_until = max(self._stranded_until, time.monotonic() + self.settings.worker_lost_after_seconds + 4)

    def _requeue_stale(self) -> None:
        """A job still queued long after it was accepted has lost its message (an emulator restarted without
        persistence, a send that never arrived): send it again. Redelivery is harmless: jobs are idempotent by id."""
        stale = self.store.stale_queued(self.settings.requeue_after_seconds)
        if stale:
            refused = self.router.send([job_message(j) for j in stale])
            log.warning(
                "re-sent jobs that sat queued too long",
                extra={"count": len(stale) - len(refused), "after_s": self.settings.requeue_after_seconds},
            )

    # -- messages to outcomes -----------------------------------------------------------------------------------
    def _publish_many(self, rows: list[dict]) -> None:
        for row in rows:  # committed in the outbox: sent in the background, in batches
            self.outbox.publish_soon(row["id"])
        self._cache_many(rows)

    def _cache(self, row: dict) -> None:
        """Redis is a cache: when it is down the job goes on, and the heartbeat rewrites the status from Postgres."""
        self._cache_many([row])

    def _cache_many(self, rows: list[dict]) -> None:
        if not rows:
            return
        try:
            self.cache.put_many(rows)  # one round trip
            self.cache_backlog.difference_update(r["id"] for r in rows)
        except Exception as exc:
            self.cache_backlog.update(r["id"] for r in rows)
            log.warning(
                "status cache unavailable; will repair",
                extra={"job_id": str(rows[0]["id"]), "count": len(rows), "error": str(exc)},
            )

    def _reconcile_cache(self, seconds: float = 30) -> int:
        """Rewrite, from Postgres, the cached status of every job of this deployment that finished in the last
        ``seconds`` and that Redis does not hold as it is: the repairs a worker that died took with it, a write a
        blackholed connection lost. Two reads when all agree."""
        rows = self.store.recently_finished(seconds)
        cached = self.cache.statuses([r["id"] for r in rows])
        fixed = 0
        for row, status in zip(rows, cached, strict=True):
            if status != row["status"]:
                full = self.store.get(row["id"])
                if full is not None and self.cache.put(full):
                    fixed += 1
        if fixed:
            log.warning("status cache repaired from Postgres", extra={"count": fixed})
        return fixed

    def _repair_cache(self) -> None:
        for job_id in list(self.cache_backlog):
            row = self.store.get(job_id)
            if row is not None:
                self.cache.put(row)  # raises while Redis is still down: the next beat tries again
            self.cache_backlog.discard(job_id)

    def process(self, body: str, receives: int, max_receives: int) -> Disposition:
        """Take one delivered message (its ``receives``-th delivery) to its job's outcome (``process_many`` of one)."""
        [outcome] = self.process_many([(body, receives)], max_receives)
        return outcome

    def process_many(self, deliveries: list[tuple[str, int]], max_receives: int) -> list[Disposition]:
        """``_process_many``, counted in the worker's metrics."""
        started = time.perf_counter()
        with self._in_hand_lock:
            self.in_hand += len(deliveries)
        try:
            out = self._process_many(deliveries, max_receives)
        finally:
            with self._in_hand_lock:
                self.in_hand -= len(deliveries)
        self.metrics.observe([d.action for d in out], time.perf_counter() - started)
        return out

    def _process_many(self, deliveries: list[tuple[str, int]], max_receives: int) -> list[Disposition]:
        """Take delivered messages (body, how many times delivered) to their jobs' outcomes, committed in Postgres,
        published to Kafka and cached in Redis, and say what becomes of each message. The states a delivery goes
        through: not a job message → left for the DLQ; a job already claimed or finished → ack (nothing new);
        claimed → running → completed / failed (permanent error, or transient on the last attempt: dead letter) /
        retried later (transient).

        Several messages (the inference jobs of one receive) go through together: one claim statement for all, one
        Redis round trip per state, their LSTM forecasts in shared forward passes, and one transaction for all their
        terminal states (group commit). Each job keeps its own outcome: one that fails does not fail the others."""
        out: list[Disposition | None] = [None] * len(deliveries)
        ids: dict[int, uuid.UUID] = {}
        for i, (body, receives) in enumerate(deliveries):
            try:
                ids[i] = uuid.UUID(str(json.loads(body)["job_id"]))
            except (ValueError, KeyError, TypeError) as exc:
                # nothing to mark failed: it goes to the dead letters once its attempts are spent
                log.error(
                    "poison message: not a job message; leaving it for the DLQ",
                    extra={"error": str(exc), "receives": receives, "body": body[:200]},
                )
                out[i] = self._retry_or_give_up(receives, max_receives)
        claims = self.store.claim_many(list(ids.values()), self.worker_id)
        claimed: dict[int, Claim] = {}
        for i, job_id in ids.items():
            claim = claims.pop(job_id, None)  # a job twice in one batch: its second message is a duplicate
            if claim is None:
                out[i] = self._not_claimed(job_id, deliveries[i][1], max_receives)
            else:
                claimed[i] = claim
        self._publish_many([c.job for c in claimed.values()])  # "running"
        timers = {i: StageTimer(c.job["id"], c.attempt) for i, c in claimed.items()}
        started = time.perf_counter()
        outcomes = self._run_pipelines(claimed, timers)
        finishes: dict[int, Finish] = {}
        for i, outcome in outcomes.items():
            job_id = ids[i]
            if isinstance(outcome, PermanentJobError):
                finishes[i] = Finish(
                    job_id,
                    Status.FAILED,
                    error_code=outcome.code,
                    error_message=outcome.message,
                    stages=timers[i].records,
                )
            elif not isinstance(outcome, Exception):
                finishes[i] = Finish(
                    job_id, outcome.status, outcome.result, outcome.model_results, stages=timers[i].records
                )
        rows = self._finish_many(list(finishes.values()))
        total_ms = round((time.perf_counter() - started) * 1000, 3)  # of the whole batch, from claim to commit
        for (i, finish), row in zip(finishes.items(), rows, strict=True):
            job = claimed[i].job
            if finish.status == Status.FAILED:
                log.info(
                    "job failed",
                    extra={"job_id": str(job["id"]), "error_code": finish.error_code, "reason": finish.error_message},
                )
            else:
                self.processed += 1
                log.info(
                    "job done",
                    extra={
                        "job_id": str(job["id"]),
                        "kind": job["kind"],
                        "status": finish.status,
                        "attempt": claimed[i].attempt,
                        "stage_ms": timers[i].durations_ms,
                        "total_ms": total_ms,
                        "batch": len(claimed),
                        "duplicate": row is None,
                    },
                )
            out[i] = ACK
        for i, outcome in outcomes.items():  # transient failures: retried later, or dead-lettered on the last attempt
            if out[i] is None:
                assert isinstance(outcome, Exception)
                out[i] = self._attempt_failed(ids[i], outcome, timers[i], deliveries[i][1], max_receives)
        done = [o for o in out if o is not None]  # every delivery was given one above
        assert len(done) == len(out), "a delivery without a disposition"
        return done

    def _run_pipelines(
        self, claimed: dict[int, Claim], timers: dict[int, StageTimer]
    ) -> dict[int, PipelineResult | Exception]:
        """Each claimed job's pipeline: the inference jobs together (``inference.run_many``), score jobs one by one."""
        outcomes: dict[int, PipelineResult | Exception] = {}
        batch = [i for i, c in claimed.items() if c.job["kind"] == Kind.INFERENCE]
        if batch:
            results = inference.run_many(
                [(claimed[i].job, timers[i]) for i in batch], self.settings.moving_average_window
            )
            outcomes.update(zip(batch, results, strict=True))
        for i, c in claimed.items():
            if c.job["kind"] != Kind.INFERENCE:
                try:
                    outcomes[i] = score.run(c.job, timers[i], self.artifacts, self._llm(), self.settings)
                except Exception as exc:
                    outcomes[i] = exc
        return outcomes

    def redeliver_later(self, receives: int, max_receives: int) -> Disposition:
        """A delivery whose job could not be settled (a dependency failed around it): delivered again after the
        backoff, or dead-lettered once its attempts are spent (the SQS queue's redrive policy does this itself)."""
        return self._retry_or_give_up(receives, max_receives)

    def _retry_or_give_up(self, receives: int, max_receives: int) -> Disposition:
        return DEAD_LETTER if receives >= max_receives else Disposition(Action.RETRY, self._backoff(receives))

    def _not_claimed(self, job_id: uuid.UUID, receives: int, max_receives: int) -> Disposition:
        job = self.store.get(job_id)
        if job is None:
            log.error("message for an unknown job; leaving it for the DLQ", extra={"job_id": str(job_id)})
            return self._retry_or_give_up(receives, max_receives)
        # a redelivery of a finished (or running) job: finish what a dead worker may have left, produce nothing new
        self.outbox.publish_soon(job_id)
        self._cache(job)
        log.info(
            "duplicate delivery of a finished job; deleted", extra={"job_id": str(job_id), "status": job["status"]}
        )
        return ACK

    def _finish(self, job_id: uuid.UUID, status: str, timer: StageTimer, result=None, model_results=None, **error):
        """One job's terminal state (``_finish_many`` of one)."""
        [row] = self._finish_many([Finish(job_id, status, result, model_results, stages=timer.records, **error)])
        return row

    def _finish_many(self, finishes: list[Finish]) -> list[dict | None]:
        """Terminal states, their stage records and their events in one transaction, then published and cached.
        Returns each row, or None where the job had already finished (a duplicate run: its events are sent anyway)."""
        rows = self.store.finish_many(finishes)
        for finish, row in zip(finishes, rows, strict=True):
            if row is None:
                self.outbox.publish_soon(finish.job_id)
        self._publish_many([r for r in rows if r is not None])
        return rows

    def _attempt_failed(
        self, job_id: uuid.UUID, exc: Exception, timer: StageTimer, receives: int, max_receives: int
    ) -> Disposition:
        """A transient failure: retried with backoff, or on the last attempt the job fails and the message goes on
        to the dead letters."""
        code = exc.code if isinstance(exc, JobError) else "unexpected_error"
        text = exc.message if isinstance(exc, JobError) else f"{type(exc).__name__}: {exc}"
        if receives >= max_receives:
            message = f"{code}: {text} (after {receives} attempts)"
            self._finish(job_id, Status.FAILED, timer, error_code="max_attempts_exceeded", error_message=message)
            log.error(
                "job failed on its last attempt; message goes to the DLQ",
                extra={"job_id": str(job_id), "error_code": code, "reason": text, "receives": receives},
            )
            return DEAD_LETTER
        self.store.record_stages(job_id, timer.records)
        self.store.note_attempt_error(job_id, code, text)
        retry = Disposition(Action.RETRY, self._backoff(receives))
        log.warning(
            "attempt failed; retrying with backoff",
            extra={
                "job_id": str(job_id),
                "error_code": code,
                "reason": text,
                "receives": receives,
                "retry_in_s": retry.delay,
            },
        )
        return retry

    def _backoff(self, receives: int) -> int:
        return int(min(MAX_BACKOFF_SECONDS, self.settings.worker_retry_base_seconds * 2 ** (receives - 1)))

    def close(self) -> None:
        """Stop cleanly: end the lease, publish the events this worker handed over, then any event of the
        deployment still unpublished (a publish Kafka refused, a worker before this one that died): when the
        deployment's last worker stops, no sweep is left to send them."""
        if self.worker_id is not None:
            try:
                self.store.end_lease(self.worker_id)
            except Exception as exc:
                log.debug("worker lease not ended", extra={"error": str(exc)})
        try:
            self.outbox.flush_pending()
            self.outbox.sweep(older_than_seconds=0, budget_s=5)
        except Exception as exc:
            log.warning("final outbox sweep failed", extra={"error": str(exc)})
        self.connections.close()
