"""The outbox: a job's Kafka events, committed in the same transaction as the job's state change and published
afterwards. This module owns the ``outbox`` table and its publishing:

- ``add`` writes events inside the caller's transaction (the job store's; its one-statement ``claim`` writes its
  ``running`` event in the same statement);
- ``OutboxTable`` claims, marks, gives back and restores them (leases, claim tokens, the uncertain flag);
- ``Outbox`` publishes them (key = job id; an acknowledged send is a written one), in the background or by sweeps,
  behind a breaker.

The Kafka log is kept across a broker that loses it. Production Kafka keeps its log on disk; a broker that keeps it in
memory (the local tansu) forgets every topic when it restarts. Postgres keeps every event in the outbox, so the
publishers restore the log: each deployment keeps a marker topic on the broker (``verisim.log-epoch.<queue>``); when
it is gone, the broker has lost its log, and one worker (an advisory lock) reads what the broker holds now and marks
every event it lacks unpublished again — the outbox sends those once more, in order, and nothing twice. They come back
uncertain, so their publisher reads the log for them once more before it sends: an event is sent again only when two
reads of the log lack it, and one read that missed an event (or a marker topic that merely looked absent) costs a
second read, never a second copy.

No publisher sends into a log it has not seen intact. A publisher's view of the log is unknown when it starts and
whenever its producer reports a broker error (a lost connection: the broker may have restarted); before its next send
it looks for the marker topic, and if the marker is gone it restores the log first (or leaves its events for the
worker doing so). Only then can a job's later event follow its restored earlier ones in the log, which the ledger
judges in the log's own order. A publisher that has not yet heard of the restart cannot write into the new log
either: no send creates a topic, and the restore makes the topics again only once the sends it overtook have failed.

An acknowledgement must mean the event is in the log, so the producer is not Kafka's idempotent one and never retries
by itself. An idempotent producer's sends carry the producer id a broker gave it; a broker that restarted empty hands
the same ids out again, and a send under an id another producer now holds looks like that producer's duplicate:
acknowledged, never written (seen on tansu: every send of a producer that outlived a restart, acknowledged, none in
the log; the events were marked published and lost). A plain producer's acknowledgement is a write. Without
librdkafka's retries a send that fails comes back as failed, and the outbox's own rule covers it: it may have
reached the log, so it is looked for there before it is sent again (no duplicate). And so that a failed send never
leaves a job's later event in the log ahead of it, one publish sends a job's events one at a time: its first events
of every job in the batch, then, after their acknowledgements, its second ones, and so on; a failure ends the publish.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from system.batching import BackgroundBatcher
from system.storage.db import DictPool, columns_of
from system.storage.events import ensure_topics, event_ids_in

log = logging.getLogger(__name__)


def add(conn, entries: list[tuple]) -> None:
    """(job_id, topic, key, payload) entries into the outbox, in ``conn``'s transaction, in one statement (ids in the
    entries' order)."""
    if entries:
        conn.execute(
            "INSERT INTO outbox (job_id, topic, key, payload) SELECT * FROM unnest(%s::uuid[], "
            "%s::text[], %s::text[], %s::jsonb[])",
            columns_of(entries),
        )


class OutboxTable:
    """The outbox rows of one deployment (``queue``): what its publishers claim, mark and give back."""

    def __init__(self, pool: DictPool, queue: str | None = None):
        self.pool = pool
        self.queue = queue  # sweeps and restores touch only the events of this queue's jobs

    def restore_unpublished(self, marker: str, present_in_log) -> int | None:
        """After a broker lost its log: every event of this deployment's jobs that is marked published yet absent
        from the log (``present_in_log(topics) -> set of event ids`` reads what the broker holds now) is marked
        unpublished again, so the outbox publishes it once more; and the claims in flight are voided (see
        ``mark_published``). The restored events are uncertain: their publisher looks for them in the log again
        before it sends them. Serialized across workers by an advisory lock on ``marker``; returns the number
        restored, or None when another worker held the lock."""
        with self.pool.connection() as conn, conn.transaction():
            if not conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", (marker,)).fetchone()[
                "pg_try_advisory_xact_lock"
            ]:
                return None
            # claims in flight may hold an acknowledgement from the broker that forgot it: void their tokens, so their
            # late mark does not stick. Their leases stay: no other publisher sends them while theirs is still at it;
            # it gives them back (release_voided), and the next publisher looks for them in the log first.
            voided = conn.execute(
                "UPDATE outbox o SET claim_token = NULL FROM jobs j WHERE j.id = o.job_id "
                "AND (j.queue = %s OR j.queue IS NULL) AND o.published_at IS NULL AND o.claim_token IS NOT NULL",
                (self.queue,),
            ).rowcount
            if voided:
                log.warning("claims in flight voided by the log restore", extra={"count": voided})
            rows = conn.execute(
                "SELECT o.id, o.topic FROM outbox o JOIN jobs j ON j.id = o.job_id WHERE o.published_at IS NOT NULL "
                "AND (j.queue = %s OR j.queue IS NULL)",
                (self.queue,),
            ).fetchall()
            if not rows:
                return 0
            present = present_in_log(sorted({r["topic"] for r in rows}))
            missing = [r["id"] for r in rows if r["id"] not in present]
            if missing:
                conn.execute(
                    "UPDATE outbox SET published_at = NULL, claimed_until = NULL, uncertain = true WHERE id = ANY(%s)",
                    (missing,),
                )
            return len(missing)

    def claim(
        self,
        job_id: uuid.UUID | None = None,
        older_than_seconds: float = 0,
        limit: int = 500,
        lease_seconds: float = 30,
        job_ids: list[uuid.UUID] | None = None,
        blocked: list | None = None,
    ):
        """Unpublished events (of ``job_id``, of ``job_ids``, or — a sweep — of any of this deployment's jobs older
        than ``older_than_seconds``), leased to this caller so two publishers never send the same one (a lease that
        expires, because its publisher died, makes the events claimable again).

        A job's events reach the log in their order: an event is claimed only together with every earlier unpublished
        event of its job, so one publisher sends them in order. One whose earlier event another publisher holds (its
        'queued' event still on its way from the API, say) is left for that publisher's turn to end; its job id is
        added to ``blocked``, if given, so the caller can come back for it."""
        if job_id is not None:
            job_ids = [job_id]
        where = (
            "job_id = ANY(%(jobs)s)"
            if job_ids is not None
            else (
                "created_at < now() - make_interval(secs => %(age)s) AND EXISTS (SELECT 1 FROM jobs j WHERE "
                "j.id = outbox.job_id AND (j.queue = %(queue)s OR j.queue IS NULL))"
            )
        )  # a sweep: this deployment's jobs
        # A claim marks the rows uncertain until they are marked published: if the broker takes them but the mark
        # never commits (Postgres lost mid-publish, the publisher killed), the next publisher finds them still
        # uncertain and looks for them in the log before sending them again (``was_uncertain``). Its token
        # (``claim_token``, the same on every row) is what ``mark_published`` must show. A candidate is free when
        # every earlier unpublished event of its job is a candidate too (so, by induction, free as well); the
        # others stay where they are, flagged ``blocked`` in the answer. (A job's events are found by its job_id
        # index: OFFSET 0 keeps the planner from the unpublished partial index, which still lists every row
        # published since the last vacuum.)
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"""WITH c AS (SELECT id, job_id, uncertain AS was_uncertain FROM outbox
                               WHERE published_at IS NULL AND {where}
                               AND (claimed_until IS NULL OR claimed_until < now())
                               ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED),
                        free AS (SELECT c.* FROM c WHERE NOT EXISTS (
                                    SELECT 1 FROM (SELECT id, published_at FROM outbox WHERE job_id = c.job_id
                                                   OFFSET 0) p
                                    WHERE p.id < c.id AND p.published_at IS NULL
                                    AND p.id NOT IN (SELECT id FROM c))),
                        claimed AS (UPDATE outbox o SET claimed_until = now() + make_interval(secs => %(lease)s),
                                        uncertain = true, claim_token = %(token)s
                                    FROM free WHERE o.id = free.id
                                    RETURNING o.*, free.was_uncertain)
                    SELECT *, false AS blocked FROM claimed
                    UNION ALL
                    SELECT o.*, c.was_uncertain, true AS blocked FROM c JOIN outbox o ON o.id = c.id
                    WHERE c.id NOT IN (SELECT id FROM free)""",
                {
                    "jobs": job_ids,
                    "age": older_than_seconds,
                    "lease": lease_seconds,
                    "limit": limit,
                    "queue": self.queue,
                    "token": uuid.uuid4(),
                },
            ).fetchall()
        if blocked is not None:
            blocked.extend(sorted({r["job_id"] for r in rows if r["blocked"]}))
        return [{k: v for k, v in r.items() if k != "blocked"} for r in rows if not r["blocked"]]

    def release(self, ids: list[int], uncertain: bool = False, token: uuid.UUID | None = None) -> None:
        """Give claimed events back. ``uncertain``: their publish timed out, so they may be in the log already.
        ``token``: only while they are still this claim's — or no one's: a claim a log restore voided (its token
        cleared, its lease kept) is given back by its holder too, as uncertain, rather than held until the lease runs
        out (a job's later events wait behind it)."""
        if ids:
            with self.pool.connection() as conn:
                conn.execute(
                    "UPDATE outbox SET claimed_until = NULL, claim_token = NULL, "
                    "uncertain = uncertain OR %s OR claim_token IS NULL "
                    "WHERE id = ANY(%s) AND published_at IS NULL "
                    "AND (%s::uuid IS NULL OR claim_token = %s OR claim_token IS NULL)",
                    (uncertain, ids, token, token),
                )

    def voided_in_flight(self) -> int:
        """Claims of this deployment's events that a log restore voided and their publishers still hold (their sends
        may still be on their way: they give them back once the broker has answered or the send timed out)."""
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT count(*) AS n FROM outbox o JOIN jobs j ON j.id = o.job_id WHERE o.published_at IS NULL "
                "AND o.claim_token IS NULL AND o.claimed_until > now() AND (j.queue = %s OR j.queue IS NULL)",
                (self.queue,),
            ).fetchone()["n"]

    def release_unsent(self, rows: list[dict], token: uuid.UUID | None) -> None:
        """Give back claimed events this claim never sent: as certain as they were before it (``was_uncertain``); a
        claim a log restore voided meanwhile is given back uncertain, as ``release`` does."""
        if rows:
            with self.pool.connection() as conn:
                conn.execute(
                    "UPDATE outbox SET claimed_until = NULL, "
                    "uncertain = claim_token IS NULL OR id = ANY(%s), claim_token = NULL "
                    "WHERE id = ANY(%s) AND published_at IS NULL "
                    "AND (%s::uuid IS NULL OR claim_token = %s OR claim_token IS NULL)",
                    ([r["id"] for r in rows if r.get("was_uncertain")], [r["id"] for r in rows], token, token),
                )

    def mark_published(self, ids: list[int], token: uuid.UUID | None = None) -> set[int]:
        """Mark them published; returns the ids marked. ``token``: only while they are still this claim's — a claim
        voided meanwhile (the broker lost its log: ``restore_unpublished``) is not marked: its publisher gives it
        back with ``release_voided``, and it is looked for in the log and sent again."""
        if not ids:
            return set()
        with self.pool.connection() as conn:
            rows = conn.execute(
                "UPDATE outbox SET published_at=now(), uncertain=false, claim_token = NULL WHERE id = ANY(%s) "
                "AND published_at IS NULL AND (%s::uuid IS NULL OR claim_token = %s) RETURNING id",
                (ids, token, token),
            ).fetchall()
        return {r["id"] for r in rows}

    def release_voided(self, ids: list[int]) -> None:
        """Give back claimed events whose claim a log restore voided: claimable again, uncertain."""
        if ids:
            with self.pool.connection() as conn:
                conn.execute(
                    "UPDATE outbox SET claimed_until = NULL, uncertain = true "
                    "WHERE id = ANY(%s) AND published_at IS NULL AND claim_token IS NULL",
                    (ids,),
                )


class Outbox:
    """Publishes the outbox. When Kafka fails, a breaker opens for ``cool_down`` seconds: job threads stop waiting
    on the broker (their events stay in the outbox) and only the periodic ``sweep`` probes it. The topics are made
    by ``restore_lost_log`` only — on a new broker, or one that lost its log, after the restore — never by a send."""

    def __init__(
        self,
        bootstrap: str,
        pool: DictPool,
        queue: str | None = None,
        topics: list[str] | None = None,
        timeout_s: float = 3,
        cool_down: float = 30,
        gather_s: float = 0.003,
    ):
        self.table = OutboxTable(pool, queue)
        self.bootstrap = bootstrap
        self.topics = topics or []
        self.timeout_s = timeout_s
        self.cool_down = cool_down
        self.open_until = 0.0
        self._lock = threading.Lock()
        self._admin: AdminClient | None = None  # one for the periodic log check (it reconnects by itself)
        self.marker = f"verisim.log-epoch.{queue or 'default'}"
        self._log_seen = False  # this publisher has seen the log intact since its producer's last broker error
        self.producer = self._new_producer()
        # job ids whose new events are sent in the background (publish_soon)
        self._background = BackgroundBatcher(
            self.publish_jobs, name="outbox-publisher", batch_size=200, gather_s=gather_s
        )

    def _new_producer(self) -> Producer:
        self._log_seen = False
        return Producer(
            {
                "bootstrap.servers": self.bootstrap,
                # an acknowledgement is a write (the module's docstring: why not the idempotent producer), and a send
                # that fails is reported, not sent again behind the outbox's back
                "enable.idempotence": False,
                "acks": "all",
                "message.send.max.retries": 0,
                # a send never creates a topic: after a broker lost its log, the topics come back with the log's
                # restore (``restore_lost_log``), so no event reaches a new log before the events restored ahead of it
                "allow.auto.create.topics": False,
                "linger.ms": 2,
                "message.timeout.ms": int(self.timeout_s * 1000),
                "error_cb": self._on_broker_error,
            }
        )

    def _on_broker_error(self, err) -> None:
        """librdkafka's report of a broker error (served by ``poll``): the broker may have restarted, and lost its log."""
        self._log_seen = False
        log.debug("kafka reported an error; the log is looked at again before the next send", extra={"error": str(err)})

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin

    def _ready_to_send(self) -> bool:
        """Whether this publisher may send now: it has seen the log intact since its producer's last broker error,
        or looks now and finds it so, or finds it lost and restores it (what the broker lost goes back first; a
        publisher that finds another restoring it sends nothing yet). False opens the breaker: the sweep comes back."""
        self.producer.poll(0)  # serve the broker errors reported while this publisher was idle
        if self._log_seen:
            return True
        try:
            if self._log_intact() or (self.restore_lost_log() is not None and self._log_intact()):
                return True
            why = "the broker lost its log and another publisher is restoring it"
        except Exception as exc:
            why = f"could not look at the log: {exc}"
        self.open_until = time.monotonic() + self.cool_down
        log.warning("%s; the events stay in the outbox", why)
        return False

    def _log_intact(self) -> bool:
        """Whether the broker still holds the log this deployment wrote (its marker topic is there). Set before the
        look, so a broker error reported meanwhile makes the next send look again."""
        self._log_seen = True
        if self.marker in self._admin_client().list_topics(timeout=5).topics:
            return True
        self._log_seen = False
        return False

    def publish(self, rows) -> int:
        """Produce ``rows`` (one claim's rows), wait for the broker, mark the acknowledged ones published. Returns
        how many were marked (sent now, or found in the log from an earlier publish)."""
        if not rows:
            return 0
        rows = sorted(rows, key=lambda r: r["id"])
        token = rows[0].get("claim_token")  # one claim's rows: its marks stick only while the claim is still theirs
        landed: list[int] = []
        uncertain = [r for r in rows if r.get("was_uncertain")]
        if uncertain:  # an earlier publish of these may have reached the broker: whatever is in the log stays there
            try:
                present = event_ids_in(self.bootstrap, sorted({r["topic"] for r in uncertain}), timeout_s=10)
            except Exception as exc:
                self._give_back(rows, token, uncertain=False, why=f"could not check the log for earlier sends: {exc}")
                return 0
            landed = [r["id"] for r in uncertain if r["id"] in present]
            self.table.mark_published(landed, token)  # a voided claim's mark does not stick: looked for again later
            rows = [r for r in rows if r["id"] not in set(landed)]
            if landed:
                log.warning(
                    "events an earlier publish delivered were in the log already; not sent again",
                    extra={"count": len(landed)},
                )
            if not rows:
                return len(landed)
        acked: list[int] = []
        waves = _waves(rows)
        for i, wave in enumerate(waves):
            unsent = [r for w in waves[i + 1 :] for r in w]
            if i and not self._ready_to_send():  # kafka reported an error since the last wave, and the log is lost
                self.table.release_unsent(wave + unsent, token)
                break
            wave_acked, failed, producer = self._produce_and_wait(wave)
            acked += wave_acked
            if producer is None:  # produce() raised
                self.table.release_unsent(unsent, token)
                self._give_back(wave, token, uncertain=True, why=f"the producer failed: {failed[0]}")
                break
            if len(wave_acked) < len(wave):
                # refused or unanswered: an unanswered one may have reached the broker, so it is looked for in the
                # log before a resend; the later waves were never sent
                self.table.release_unsent(unsent, token)
                why = f"kafka refused {len(wave) - len(wave_acked)} event(s): {failed[0] if failed else 'no report'}"
                rest = [r for r in wave if r["id"] not in set(wave_acked)]
                self._give_back(rest, token, uncertain=True, why=why, by=producer)
                break
        marked = self.table.mark_published(acked, token)
        voided = [e for e in acked if e not in marked]
        if voided:  # acknowledged by a broker that has since lost its log (restore_unpublished voided the claim)
            self.table.release_voided(voided)
            log.warning(
                "events acknowledged by a broker that has since lost its log; they will be checked and sent again",
                extra={"count": len(voided)},
            )
        return len(marked) + len(landed)

    def _produce_and_wait(self, rows) -> tuple[list[int], list[str], Producer | None]:
        """Send ``rows``; wait (bounded) for their delivery reports. (acknowledged ids, errors, the producer used),
        the producer None when ``produce`` itself raised (its queue full, or the producer broken): it is replaced."""
        acked: list[int] = []
        failed: list[str] = []

        def on_delivery(err, msg, row_id):
            if err is None:
                acked.append(row_id)
            else:
                failed.append(str(err))

        producer = self.producer  # thread-safe; each caller waits for its own messages only
        try:
            for row in rows:
                producer.produce(
                    row["topic"],
                    key=row["key"],
                    value=json.dumps({**row["payload"], "event_id": row["id"]}, default=str),
                    on_delivery=functools.partial(on_delivery, row_id=row["id"]),
                )
        except (KafkaException, BufferError) as exc:
            self._replace_producer(producer)
            return [], [str(exc)], None
        deadline = time.monotonic() + self.timeout_s + 2
        while len(acked) + len(failed) < len(rows) and time.monotonic() < deadline:
            producer.poll(0.05)
        return acked, failed, producer

    def _give_back(self, rows, token, uncertain: bool, why: str, by: Producer | None = None) -> None:
        """Rows this publisher could not publish go back to the outbox (``uncertain``: they may have reached the
        broker, so they are looked for in the log before a resend); the breaker opens; a producer whose sends failed
        (``by``) is replaced."""
        self.table.release([r["id"] for r in rows], uncertain=uncertain, token=token)
        self.open_until = time.monotonic() + self.cool_down
        if by is not None:
            self._replace_producer(by)
        log.warning("%s; the events stay in the outbox", why)

    def _replace_producer(self, producer: Producer) -> None:
        """A broker that came back empty does not know this producer's id: start afresh (once, whoever sees it)."""
        with self._lock:
            if self.producer is producer:
                producer.purge()
                self.producer = self._new_producer()

    def publish_jobs(self, job_ids, retries: int = 10, wait_s: float = 0.02) -> int:
        """The unpublished events of these jobs in one go: one claim, one produce-and-wait, one mark for all. Events
        that must wait for an earlier event another publisher is sending (``claim``) are claimed again shortly, a
        few times; what is still held back then is the sweep's."""
        if time.monotonic() < self.open_until or not job_ids or not self._ready_to_send():
            return 0
        done = 0
        todo = list(job_ids)
        for attempt in range(retries + 1):
            blocked: list = []
            done += self.publish(self.table.claim(job_ids=todo, blocked=blocked))
            if not blocked or attempt == retries or time.monotonic() < self.open_until:
                return done
            todo = blocked
            time.sleep(wait_s)
        return done

    def publish_soon(self, job_id) -> None:
        """Hand a job's new events to this process's background publisher, which sends whatever piled up meanwhile
        in one batch (a few ms later). The caller does not wait for the broker: the events are committed in the
        outbox already, so if this process dies first a sweep publishes them, and nothing is lost."""
        self._background.put(job_id)

    def flush_pending(self, timeout: float = 10) -> None:
        """Publish what was handed over and stop the background publisher (shutdown)."""
        self._background.close(timeout)

    def sweep(self, older_than_seconds: float = 10, budget_s: float = 5.0, batch: int = 500) -> int:
        """Events a dead worker committed but never published, or that Kafka refused: also the breaker's probe.
        Batch after batch while they come full (a restored log is thousands of events), for up to ``budget_s``."""
        total = 0
        deadline = time.monotonic() + budget_s
        while True:
            if not self._ready_to_send():
                return total
            rows = self.table.claim(older_than_seconds=older_than_seconds, limit=batch)
            delivered = self.publish(rows)
            total += delivered
            if rows and delivered == len(rows):
                self.open_until = 0.0
            if len(rows) < batch or delivered < len(rows) or time.monotonic() > deadline:
                return total

    def restore_lost_log(self) -> int | None:
        """If the broker lost its log (the deployment's marker topic is gone), republish what it lost from the
        outbox. Cheap when nothing was lost: one metadata request. Returns the number of events restored (None when
        another worker is restoring it)."""
        marker = self.marker
        if self._log_intact():
            return 0
        restored = self.table.restore_unpublished(marker, lambda topics: event_ids_in(self.bootstrap, topics))
        if restored is None:  # another worker is restoring
            return None
        # the topics come back only now (no producer creates one: ``allow.auto.create.topics`` is off), after the
        # sends of the claims the restore voided have failed for want of them: those claims were made before the
        # restore, so a job's later event among them would otherwise reach the new log ahead of its restored
        # earlier ones
        deadline = time.monotonic() + self.timeout_s + 2  # by then librdkafka has failed every send made before
        while self.table.voided_in_flight() and time.monotonic() < deadline:
            time.sleep(0.1)
        admin = self._admin_client()
        ensure_topics(self.bootstrap, self.topics, admin=admin)
        ensure_topics(self.bootstrap, [marker], partitions=1, admin=admin)
        if restored:
            log.warning(
                "the broker lost its log (restarted without persistence?): restoring events from the outbox",
                extra={"count": restored},
            )
            self.sweep(older_than_seconds=0)
        return restored

    def close(self) -> None:
        self.flush_pending()
        self.producer.flush(10)


def _waves(rows: list[dict]) -> list[list[dict]]:
    """``rows`` (in id order) as waves: every job's first event, then every job's second, … — a job's event is sent
    only once its earlier one is acknowledged."""
    waves: list[list[dict]] = []
    rank: dict = {}
    for r in rows:
        k = rank[r["job_id"]] = rank.get(r["job_id"], -1) + 1
        if k == len(waves):
            waves.append([])
        waves[k].append(r)
    return waves
