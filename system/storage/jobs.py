"""The job record in Postgres: every state change in one transaction, with its Kafka events in the outbox.

The pool's connections are in autocommit (``system.storage.db.make_pool``): a single statement is its own transaction
(no BEGIN/COMMIT round trips); every change of more than one statement runs in ``conn.transaction()``."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from system.jobs.lifecycle import OPEN, TERMINAL, Status, new_job_id, sql_list
from system.jobs.shapes import job_message, result_events, status_event, status_event_sql
from system.storage import outbox
from system.storage.db import DictPool, columns_of


@dataclass
class Claim:
    """What a worker gets when it may run a job: the row, and which attempt this is."""

    job: dict[str, Any]
    attempt: int


@dataclass
class Finish:
    """A job's terminal transition, as ``JobStore.finish_many`` writes it."""

    job_id: uuid.UUID
    status: str
    result: dict[str, Any] | None = None
    model_results: list[dict[str, Any]] | None = None
    error_code: str | None = None
    error_message: str | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)


def _stage_rows(job_id: uuid.UUID, stages: list[dict[str, Any]], skew: timedelta = timedelta(0)) -> list[tuple]:
    """Rows of ``job_stages``; ``skew``: what to add to the worker's clock to read Postgres's."""
    return [
        (
            job_id,
            s["name"],
            s["attempt"],
            s["started"] + skew,
            s["finished"] + skew,
            s["ms"],
            s["status"],
            Jsonb(s["detail"]) if s["detail"] is not None else None,
        )
        for s in stages
    ]


OPEN_SQL = sql_list(OPEN)
SYNC_MAX_RTT_S = 0.2  # a clock measurement whose round trip took longer is not trusted
SKEW_MIN_S = 0.5  # a smaller skew is not corrected: the oracle allows the two clocks 1 s


class JobStore:
    def __init__(self, pool: DictPool, topics: dict[str, str], queue: str | None = None):
        self.pool = pool
        self.topics = topics  # {"inference": ..., "score": ..., "events": ...}
        self.queue = queue  # the SQS queue this deployment sends to: its jobs are the only ones its sweeps touch
        # Postgres's clock minus this process's: a stage is timed by the worker's clock, while every other stored
        # time is Postgres's now(); a worker whose clock is off (NTP lost, a VM resumed) must not store a stage
        # that began before its job was enqueued (``sync_clock``)
        self.skew = timedelta(0)

    # -- writes --------------------------------------------------------------------------------------------------
    def create(
        self, kind: str, params: dict[str, Any], input_key: str | None = None, job_id: uuid.UUID | None = None
    ) -> dict[str, Any]:
        job_id = job_id or new_job_id()
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO jobs (id, kind, status, params, input_key, queue) VALUES (%s, %s, %s, %s, %s, %s) "
                "RETURNING *",
                (job_id, kind, Status.QUEUED, Jsonb(params), input_key, self.queue),
            ).fetchone()
            self._events(conn, [row], Status.QUEUED)
        return row

    def create_many(self, kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The jobs of one request, in one transaction: one INSERT for the rows, one for their events."""
        if not items:
            return []
        ids = [new_job_id() for _ in items]
        with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
            got = conn.execute(
                "INSERT INTO jobs (id, kind, status, params, queue) SELECT t.id, %s, %s, t.params, %s "
                "FROM unnest(%s::uuid[], %s::jsonb[]) AS t(id, params) RETURNING *",
                (kind, Status.QUEUED, self.queue, ids, [Jsonb(p) for p in items]),
            ).fetchall()
            by_id = {r["id"]: r for r in got}
            rows = [by_id[i] for i in ids]  # in the request's order
            self._events(conn, rows, Status.QUEUED)
        return rows

    def mark_send_pending(self, job_ids: list[uuid.UUID]) -> None:
        """The queue did not take these jobs' messages: they stay accepted and a worker's sweep sends them."""
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE jobs SET send_pending = true WHERE id = ANY(%s) AND status = %s", (job_ids, Status.QUEUED)
            )

    def send_pending(self, send, limit: int = 500) -> int:
        """Send the jobs whose messages the queue did not take (``send(messages) -> refused job ids``, may raise).
        The rows stay locked (SKIP LOCKED for other workers) until the queue answered; refused ones stay pending."""
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                f"SELECT id, kind FROM jobs WHERE send_pending AND status IN {OPEN_SQL} "
                "AND (queue = %s OR queue IS NULL) "
                "ORDER BY enqueued_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (self.queue, limit),
            ).fetchall()
            if not rows:
                return 0
            refused = set(send([job_message(r) for r in rows]))
            sent = [r["id"] for r in rows if str(r["id"]) not in refused]
            conn.execute("UPDATE jobs SET send_pending = false, updated_at = now() WHERE id = ANY(%s)", (sent,))
        return len(sent)

    def claim(self, job_id: uuid.UUID) -> Claim | None:
        """Mark the job running (again, after a redelivery), with its event, in one statement (one round trip).
        None if it is unknown or already terminal."""
        return self.claim_many([job_id]).get(job_id)

    def claim_many(self, job_ids: list[uuid.UUID], worker: str | None = None) -> dict[uuid.UUID, Claim]:
        """``claim`` for several jobs in one statement: the claims made, by job id (the unknown and terminal ones
        are absent). ``worker``: the claiming worker's lease (``beat``), for the workers that keep one."""
        if not job_ids:
            return {}
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"""WITH j AS (UPDATE jobs SET status=%(status)s, attempts=attempts+1, claimed_by=%(worker)s,
                                  started_at=coalesce(started_at, now()), updated_at=now()
                              WHERE id = ANY(%(ids)s) AND status IN {OPEN_SQL} RETURNING *),
                        e AS (INSERT INTO outbox (job_id, topic, key, payload)
                              SELECT id, %(topic)s, id::text, {status_event_sql()} FROM j)
                   SELECT * FROM j""",
                {
                    "ids": sorted(set(job_ids)),
                    "topic": self.topics["events"],
                    "status": Status.RUNNING,
                    "worker": worker,
                },
            ).fetchall()
        return {r["id"]: Claim(r, r["attempts"]) for r in rows}

    _STAGE_SQL = (
        "INSERT INTO job_stages (job_id, stage, attempt, started_at, finished_at, duration_ms, status, "
        "detail) SELECT * FROM unnest(%s::uuid[], %s::text[], %s::int[], %s::timestamptz[], "
        "%s::timestamptz[], %s::float8[], %s::text[], %s::jsonb[]) ON CONFLICT (job_id, stage, attempt) "
        "DO UPDATE SET finished_at=excluded.finished_at, duration_ms=excluded.duration_ms, "
        "status=excluded.status, detail=excluded.detail"
    )

    def sync_clock(self) -> float:
        """Measure how far Postgres's clock is from this process's (against the round trip's midpoint) and keep it
        for the stage times this store writes. A measurement whose round trip took over ``SYNC_MAX_RTT_S`` is
        dropped (a busy worker's thread, a stalled Postgres: its midpoint can be seconds off — seen on a loaded CI
        machine, stages stored 5 s before their jobs), and a skew under ``SKEW_MIN_S`` is left alone (it is within
        what the round trip can tell). Returns the skew in use, in seconds."""
        with self.pool.connection() as conn:
            before = time.time()
            db = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8 AS t").fetchone()["t"]
            after = time.time()
        if after - before <= SYNC_MAX_RTT_S:
            measured = float(db) - (before + after) / 2
            self.skew = timedelta(seconds=measured if abs(measured) >= SKEW_MIN_S else 0.0)
        return self.skew.total_seconds()

    def record_stages(self, job_id: uuid.UUID, stages: list[dict[str, Any]], conn=None) -> None:
        """Stage records (``StageTimer.records``) in one statement; in ``conn``'s transaction when given."""
        self._record_stage_rows(_stage_rows(job_id, stages, self.skew), conn)

    def _record_stage_rows(self, rows: list[tuple], conn=None) -> None:
        if not rows:
            return
        if conn is not None:
            conn.execute(self._STAGE_SQL, columns_of(rows))
            return
        with self.pool.connection() as own:
            own.execute(self._STAGE_SQL, columns_of(rows))

    def finish(
        self,
        job_id: uuid.UUID,
        status: str,
        result: dict[str, Any] | None,
        model_results: list[dict[str, Any]] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        stages: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any] | None:
        """The one terminal transition. Returns the row if this call made it, None if the job was already terminal
        (a redelivered message finishing second writes nothing: no second result, no second event). ``stages``: this
        attempt's stage records, written in the same transaction (one round trip for all of them)."""
        [row] = self.finish_many(
            [Finish(job_id, status, result, model_results, error_code, error_message, stages or [])]
        )
        return row

    def finish_many(self, finishes: list[Finish]) -> list[dict[str, Any] | None]:
        """``finish`` for several jobs (distinct ids) in one transaction, a statement per table for all of them
        (group commit: the jobs a worker ran together pay for one commit). Returns each one's row, or None where the
        job was already terminal."""
        if not finishes:
            return []
        assert all(f.status in TERMINAL for f in finishes)
        assert len({f.job_id for f in finishes}) == len(finishes), "one finish per job"
        with self.pool.connection() as conn, conn.pipeline(), conn.transaction():
            got = conn.execute(
                "UPDATE jobs SET status=t.status, result=t.result, error_code=t.error_code, "
                "error_message=t.error_message, finished_at=now(), updated_at=now() "
                "FROM unnest(%s::uuid[], %s::text[], %s::jsonb[], %s::text[], %s::text[]) "
                "AS t(id, status, result, error_code, error_message) "
                f"WHERE jobs.id = t.id AND jobs.status IN {OPEN_SQL} RETURNING jobs.*",
                columns_of(
                    [
                        (
                            f.job_id,
                            f.status,
                            Jsonb(f.result) if f.result is not None else None,
                            f.error_code,
                            f.error_message,
                        )
                        for f in finishes
                    ]
                ),
            ).fetchall()
            rows = {r["id"]: r for r in got}
            made = [(f, rows[f.job_id]) for f in finishes if f.job_id in rows]
            # the stages of the attempts that ended their jobs: an attempt that lost (its job ended by another, e.g.
            # a paused worker's after its message was redelivered) writes nothing, stages included
            self._record_stage_rows([r for f, _ in made for r in _stage_rows(f.job_id, f.stages, self.skew)], conn)
            results = [
                (
                    f.job_id,
                    m["model"],
                    m["pattern"],
                    Jsonb(m["prediction"]),
                    m["inference_ms"],
                    m.get("mae"),
                    m.get("rmse"),
                    row["enqueued_at"],
                )
                for f, row in made
                for m in f.model_results or []
            ]
            if results:
                conn.execute(
                    "INSERT INTO inference_results (job_id, model_name, pattern, prediction, inference_ms, mae, rmse, "
                    "created_at) SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::jsonb[], "
                    "%s::float8[], %s::float8[], %s::float8[], %s::timestamptz[]) ON CONFLICT DO NOTHING",
                    columns_of(results),
                )  # completed_at: now()
            outbox.add(conn, [e for f, row in made for e in self._terminal_entries(row, f.model_results or [])])
        return [rows.get(f.job_id) for f in finishes]

    def queued_ids(self, older_than_seconds: float, limit: int = 5000) -> list[tuple[uuid.UUID, str]]:
        """(id, kind) of this deployment's jobs still queued and untouched for longer than ``older_than_seconds``,
        oldest first."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, kind FROM jobs WHERE status = %s AND (queue = %s OR queue IS NULL) "
                "AND updated_at < now() - make_interval(secs => %s) ORDER BY enqueued_at LIMIT %s",
                (Status.QUEUED, self.queue, older_than_seconds, limit),
            ).fetchall()
        return [(r["id"], r["kind"]) for r in rows]

    def flag_for_sending(self, job_ids: list[uuid.UUID]) -> int:
        """Have the workers' re-send sweep send these jobs again (those still queued); returns how many."""
        if not job_ids:
            return 0
        with self.pool.connection() as conn:
            return conn.execute(
                "UPDATE jobs SET send_pending = true, updated_at = now() WHERE id = ANY(%s) AND status = %s",
                (job_ids, Status.QUEUED),
            ).rowcount

    def stale_queued(self, older_than_seconds: float, limit: int = 500) -> list[dict[str, Any]]:
        """Jobs queued and untouched for longer than ``older_than_seconds``; their clock restarts (one worker takes
        them: SKIP LOCKED), so each is re-sent at most once per period."""
        with self.pool.connection() as conn:
            return conn.execute(
                """UPDATE jobs SET updated_at = now() WHERE id IN (
                       SELECT id FROM jobs WHERE status = %s AND (queue = %s OR queue IS NULL)
                       AND updated_at < now() - make_interval(secs => %s)
                       ORDER BY enqueued_at LIMIT %s FOR UPDATE SKIP LOCKED)
                   RETURNING id, kind""",
                (Status.QUEUED, self.queue, older_than_seconds, limit),
            ).fetchall()

    def note_queue_epoch(self, created: str) -> int:
        """The queue's creation stamp as a worker sees it now. When it differs from the one recorded, the queue was
        recreated (the emulator lost its messages): this deployment's queued jobs are flagged for re-sending in the
        same transaction — by exactly one worker, whichever gets the row first. Returns how many were flagged."""
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute("SELECT created FROM queue_epochs WHERE queue = %s FOR UPDATE", (self.queue,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO queue_epochs (queue, created) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (self.queue, created),
                )
                return 0
            if row["created"] == created:
                return 0
            conn.execute(
                "UPDATE queue_epochs SET created = %s, changed_at = now() WHERE queue = %s", (created, self.queue)
            )
            # queued jobs lost their messages; so may running ones (a worker whose release or delete failed while
            # the emulator was down never gets the message back): both are sent again — a duplicate is harmless
            return conn.execute(
                f"UPDATE jobs SET send_pending = true WHERE status IN {OPEN_SQL} AND queue = %s AND NOT send_pending",
                (self.queue,),
            ).rowcount

    # -- worker leases (see migrations/0006_worker_leases.sql) ------------------------------------------------------
    def beat(self, worker: str) -> None:
        """The worker is alive: its lease is renewed (one statement)."""
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO worker_leases (worker, queue) VALUES (%s, %s) "
                "ON CONFLICT (worker) DO UPDATE SET seen_at = now()",
                (worker, self.queue),
            )

    def end_lease(self, worker: str) -> None:
        """A worker stopping cleanly: its lease goes (what it ran is finished or handed back)."""
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM worker_leases WHERE worker = %s", (worker,))

    def reclaim_lost(self, after_seconds: float) -> list[tuple[str, int]]:
        """The workers of this deployment silent for ``after_seconds``: each lease removed and, in the same
        statement, the jobs it was running flagged for re-sending. Returns (worker, jobs flagged) per lost worker;
        a lease is removed once, so only one sweeper acts on it."""
        with self.pool.connection() as conn, conn.transaction():
            # a frozen worker may hold its jobs' rows mid-transaction: give up for now rather than wait (the lease
            # stays, and the next sweep tries again)
            conn.execute("SET LOCAL lock_timeout = '2s'")
            rows = conn.execute(
                """WITH lost AS (DELETE FROM worker_leases WHERE (queue = %(queue)s OR queue IS NULL)
                                 AND seen_at < now() - make_interval(secs => %(after)s) RETURNING worker),
                        flagged AS (UPDATE jobs SET send_pending = true, updated_at = now()
                                    WHERE status = %(running)s AND claimed_by IN (SELECT worker FROM lost)
                                    RETURNING claimed_by)
                   SELECT l.worker, count(f.claimed_by) AS jobs FROM lost l
                   LEFT JOIN flagged f ON f.claimed_by = l.worker GROUP BY l.worker""",
                {"queue": self.queue, "after": after_seconds, "running": Status.RUNNING},
            ).fetchall()
        return [(r["worker"], r["jobs"]) for r in rows]

    def recently_finished(self, seconds: float, settled: float = 3.0, limit: int = 5000) -> list[dict[str, Any]]:
        """(id, status) of this deployment's jobs that turned terminal in the last ``seconds``, at least ``settled``
        seconds ago (their worker has had time to tell Redis itself)."""
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT id, status FROM jobs WHERE (queue = %s OR queue IS NULL) AND finished_at > now() - "
                "make_interval(secs => %s) AND finished_at < now() - make_interval(secs => %s) "
                "ORDER BY finished_at DESC LIMIT %s",
                (self.queue, seconds, settled, limit),
            ).fetchall()

    def note_attempt_error(self, job_id: uuid.UUID, code: str, message: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE jobs SET error_code=%s, error_message=%s, updated_at=now() WHERE id=%s "
                f"AND status IN {OPEN_SQL}",
                (code, message[:2000], job_id),
            )

    # -- its events (outbox entries, written in the caller's transaction) -----------------------------------------
    def _events(self, conn, rows: list[dict[str, Any]], status: str) -> None:
        """The status events of ``rows`` into the outbox, in ``conn``'s transaction (one statement)."""
        outbox.add(conn, [self._status_entry(r, status) for r in rows])

    def _status_entry(self, row: dict[str, Any], status: str) -> tuple:
        """A job's status event on the events topic: (job_id, topic, key, payload)."""
        return (row["id"], self.topics["events"], str(row["id"]), Jsonb(status_event(row, status)))

    def _terminal_entries(self, row: dict[str, Any], model_results: list[dict[str, Any]]) -> list[tuple]:
        """A finished job's events: its status, and its results on its kind's topic."""
        return [self._status_entry(row, row["status"])] + [
            (row["id"], self.topics[topic], str(row["id"]), Jsonb(payload))
            for topic, payload in result_events(row, model_results)
        ]

    # -- reads ---------------------------------------------------------------------------------------------------
    def get(self, job_id: uuid.UUID) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            job = conn.execute("SELECT * FROM jobs WHERE id=%s", (job_id,)).fetchone()
            if job is None:
                return None
            job["stages"] = conn.execute(
                "SELECT stage, attempt, started_at, finished_at, duration_ms, status, detail FROM job_stages "
                "WHERE job_id=%s ORDER BY started_at",
                (job_id,),
            ).fetchall()
            job["models"] = conn.execute(
                "SELECT model_name, pattern, prediction, inference_ms, mae, rmse, created_at FROM inference_results "
                "WHERE job_id=%s ORDER BY model_name",
                (job_id,),
            ).fetchall()
        return job
