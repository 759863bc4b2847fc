"""The ledger: after a run, every accepted job is in exactly one terminal state, and every store agrees.

Two halves, so each verdict can be shown to fail on a recorded state without a stack:

* ``gather(stack, job_ids, …)`` reads the stores into a ``StoreState``: the Postgres rows, Redis
  ``job:status:<id>``, the Kafka topics (results and ``job_events``), the refused submissions and the DLQ;
* ``judge(state)`` turns a ``StoreState`` into a ``LedgerReport`` whose problems each carry a kind (``PROBLEMS``).

What must hold, per accepted job:

* Postgres (the record) holds it, in a terminal status; a failed job has its reason (``error_code``).
* Redis ``job:status:<id>`` shows the same status (Redis is a cache that may lag, never disagree, once settled).
* Kafka result events: an inference job lists the models it runs and has exactly one event per model, none for a
  model it did not run and none without a model; a score job exactly one event. Every event carries the record's
  status.
* Kafka ``job_events``, in the log's order (offsets in the job key's partition): one forward path — ``queued``,
  then ``running`` once per attempt (as many as the record's ``attempts``), then exactly one terminal event, the
  record's status, last — with no event twice; its result events after its last ``running`` event.
* What it produced (``harness.oracles.content``): every output against the oracle's own reference, every copy alike field by
  field, its input what its client sent.
* A failed job is within the run's failure budget (default: none may fail).
* A topic read that hit its deadline is a problem (a cut-short read could hide a duplicate), never a pass.

Across the run: the accepted jobs are those the clients were told of (their journal, ``harness.oracles.journal``), never
what the stores hold; a job on the run's queue that no client submitted is a problem; a refused submission (the API
did not answer 2xx) never became a job; every DLQ message is a job that failed with its reason, or a body that is no
job at all. An empty journal is an error: it proves nothing.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.drivers.events import TopicReadIncomplete, by_key, read_topic
from harness.oracles import content
from harness.oracles.contract import EVENTS_TOPIC, FAILED, OPEN, QUEUED, RESULT_TOPICS, RUNNING, TERMINAL, status_key
from harness.oracles.journal import Journal

# every kind of problem the ledger reports, with what it means
PROBLEMS = {
    "lost": "accepted (2xx) but not in Postgres",
    "not_terminal": "in Postgres but not in a terminal status",
    "failed_without_reason": "failed with no error_code",
    "redis_disagrees": "Redis job:status differs from Postgres",
    "no_models": "an inference job that lists no models",
    "result_missing": "no Kafka result event for a model the job ran (or for a score job)",
    "result_duplicate": "more than one Kafka result event for the same job and model",
    "result_unexpected": "a Kafka result event for a model the job did not run, or with no model",
    "result_status": "a Kafka result event whose status differs from Postgres",
    "events_missing": "job_events lacks the queued, running or terminal transition",
    "events_duplicate": "the same job_events transition published twice",
    "events_order": "job_events do not form one forward path ending in the terminal status",
    "topic_incomplete": "a Kafka topic read hit its deadline: the verdict would rest on a partial read",
    "refused_ran": "a submission the API refused became a job anyway",
    "dlq_unexplained": "a DLQ message for a job that is not failed with a reason",
    "unsubmitted": "a job in the stores that no client was told about (not in the client journal)",
    "failed_unbudgeted": "a job failed with a reason the run's failure budget does not allow (a failure is not a "
    "success)",
    "events_attempts": "the number of running events differs from the row's attempts",
    **content.CHECKS,  # what each job produced (harness.oracles.content)
}


# Problems that waiting cannot mend: each is about a job already terminal in Postgres, or a row, message or input
# that exists. ``settle`` stops waiting once two reads agree on a set of only these (it still waits out lag: a
# missing event, a Redis status behind, a job not yet terminal).
FINAL = frozenset(
    {
        "failed_without_reason",
        "failed_unbudgeted",
        "no_models",
        "unsubmitted",
        "refused_ran",
        "input_differs",
        "prediction_wrong",
        "metrics_wrong",
        "analysis_wrong",
        "audio_wrong",
        "times_impossible",
    }
)


class EmptyLedger(ValueError):
    """``check`` was given no job ids: a verdict over nothing proves nothing."""

    def __init__(self):
        super().__init__(
            "the ledger was given no job ids and no refused submissions: a run that sent nothing proves nothing"
        )


@dataclass
class StoreState:
    """What the stores held when ``gather`` read them (recordable: unit tests build these by hand)."""

    job_ids: list[str]
    rows: dict[str, dict[str, Any]]  # Postgres: id -> {kind, status, params, error_code}
    cached: dict[str, str | None]  # Redis job:status:<id> (raw JSON) per id
    results: dict[str, dict[str, list[dict]]]  # kind -> job id -> result events (values)
    job_events: dict[str, list[dict]]  # job id -> job_events values
    read_errors: list[str] = field(default_factory=list)
    refused_rows: dict[str, list[dict]] = field(default_factory=dict)  # refused token -> jobs that carry it
    dlq: list[dict] = field(default_factory=list)  # {"message_id", "job_id" | None, "status", "error_code"}
    unsubmitted: list[dict] = field(default_factory=list)  # rows in the run's scope that no client was told about
    outputs: content.Outputs | None = None  # what the jobs produced (None: contents not judged)
    failures: dict[str, int] = field(default_factory=dict)  # the failure budget: error_code (or "*") -> allowed


@dataclass
class LedgerReport:
    jobs: int = 0
    by_status: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)  # problem kind -> count
    dlq: dict[str, int] = field(default_factory=dict)  # DLQ messages by explanation
    checked_at: float | None = None  # wall clock when the check that produced this report began reading
    content: dict = field(default_factory=dict)  # the content oracle's counts: checked, unchecked, mismatches
    journal: dict = field(default_factory=dict)  # the client journal's counts (accepted, refused, by source)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, subject: str, text: str) -> None:
        assert kind in PROBLEMS, kind
        self.kinds[kind] += 1
        self.problems.append(f"{subject}: [{kind}] {text}")

    def summary(self) -> str:
        head = f"{self.jobs} jobs: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items()))
        if self.content:
            checked = sum(self.content.get("checked", {}).values())
            head += f"; {checked} outputs checked, {self.content.get('mismatches', 0)} mismatches"
        if self.ok:
            return head + "; every store agrees"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.kinds.items()))
        return head + f"; {len(self.problems)} problem(s) ({kinds}):\n  " + "\n  ".join(self.problems[:50])


# -- reading the stores ------------------------------------------------------------------------------------------
def gather(
    stack,
    job_ids,
    topics: dict[str, str] | None = None,
    refused: list[str] | tuple = (),
    dlq_name: str | None = None,
    events_topic: str = EVENTS_TOPIC,
    journal: Journal | None = None,
    scope: list[str] | tuple = (),
    contents: bool = True,
    s3_lost_before: float | None = None,
) -> StoreState:
    """``journal``: the digests of what the clients sent; ``scope``: the queues whose jobs must all be in
    ``job_ids`` (any other job accepted on them since the journal began is *unsubmitted*); ``contents``: read the
    jobs' outputs for the content oracle too."""
    import psycopg
    from psycopg.rows import dict_row

    topics = topics or RESULT_TOPICS
    ids = [str(j) for j in job_ids]
    errors: list[str] = []
    unsubmitted: list[dict] = []
    with psycopg.connect(stack.postgres.dsn, row_factory=dict_row) as conn:
        if scope and journal is not None:
            unsubmitted = [
                {**r, "id": str(r["id"])}
                for r in conn.execute(
                    "SELECT id, kind, status, queue, enqueued_at, params->'metadata'->>'submission' AS token, "
                    "params->>'filename_stem' AS stem FROM jobs WHERE queue = ANY(%s) "
                    "AND enqueued_at >= to_timestamp(%s) AND NOT (id = ANY(%s::uuid[]))",
                    (list(scope), journal.started, ids),
                )
            ]
            unsubmitted = [u for u in unsubmitted if u["token"] not in refused and u["stem"] not in refused]
        rows = {
            str(r["id"]): r
            for r in conn.execute(
                "SELECT id, kind, status, params, error_code, error_message, attempts FROM jobs WHERE id = ANY(%s::uuid[])",
                (ids,),
            )
        }
        refused_rows: dict[str, list[dict]] = {}
        if refused:
            for r in conn.execute(
                "SELECT id, status, attempts, params->'metadata'->>'submission' AS token, "
                "params->>'filename_stem' AS stem FROM jobs "
                "WHERE params->'metadata'->>'submission' = ANY(%s) OR params->>'filename_stem' = ANY(%s)",
                (list(refused), list(refused)),
            ):
                token = r["token"] if r["token"] in refused else r["stem"]
                refused_rows.setdefault(token, []).append(
                    {"id": str(r["id"]), "status": r["status"], "attempts": r["attempts"]}
                )
    cached = cached_statuses(stack.redis.url, ids)

    def read(topic: str) -> dict[str, list[dict]]:
        try:
            return by_key(read_topic(stack.kafka.bootstrap_servers, topic))
        except TopicReadIncomplete as exc:
            errors.append(str(exc))
            return by_key(exc.partial)

    results = {kind: read(topic) for kind, topic in topics.items()}
    job_events = read(events_topic) if events_topic else {}
    dlq = _read_dlq(stack, dlq_name) if dlq_name else []
    digests = journal.digests if journal is not None else {}
    outputs = content.gather(stack, ids, digests, s3_lost_before) if contents else None
    return StoreState(ids, rows, cached, results, job_events, errors, refused_rows, dlq, unsubmitted, outputs)


def cached_statuses(redis_url: str, job_ids) -> dict[str, str | None]:
    import redis

    ids = [str(j) for j in job_ids]
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        found = r.mget([status_key(i) for i in ids]) if ids else []
        return {i: v if v is None or isinstance(v, str) else v.decode() for i, v in zip(ids, found, strict=True)}
    finally:
        r.close()


def cache_losses(redis_url: str, job_ids) -> list[str]:
    """The jobs whose status Redis no longer holds. Read right after a Redis restart, before any worker could rewrite
    them: what the restart itself lost (none, when Redis persists its data)."""
    return [j for j, v in cached_statuses(redis_url, job_ids).items() if not v]


def _read_dlq(stack, dlq_name: str) -> list[dict]:
    """Every message in the DLQ, peeked (received with visibility 0, not removed), with its job's record; the Celery
    transport's dead letters (the Redis list of the same name) too."""
    import psycopg
    import redis

    sqs = stack.aws.client("sqs")
    seen: dict[str, str] = {}
    try:
        url = sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:  # a system whose jobs all travel on Celery never made an SQS queue
        url = None
    for _ in range(50 if url else 0):
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0, AttributeNames=["All"]
        ).get("Messages", [])
        new = [m for m in got if m["MessageId"] not in seen]
        if not new:
            break
        for m in new:
            seen[m["MessageId"]] = m["Body"]
    with redis.Redis.from_url(stack.redis.url, socket_timeout=5) as r:
        for i, body in enumerate(r.lrange(dlq_name, 0, -1)):
            seen[f"celery-dead-letter-{i}"] = body.decode(errors="replace")
    out = []
    for mid, body in seen.items():
        try:
            jid = str(json.loads(body)["job_id"])
        except (ValueError, KeyError, TypeError):
            jid = None
        out.append({"message_id": mid, "job_id": jid, "status": None, "error_code": None})
    ids = [m["job_id"] for m in out if m["job_id"]]
    if ids:
        with psycopg.connect(stack.postgres.dsn) as conn:
            rows = {
                str(r[0]): r[1:]
                for r in conn.execute("SELECT id, status, error_code FROM jobs WHERE id::text = ANY(%s)", (ids,))
            }
        for m in out:
            if m["job_id"] in rows:
                m["status"], m["error_code"] = rows[m["job_id"]]
    return out


# -- the verdict -------------------------------------------------------------------------------------------------
def judge(state: StoreState, refused: int = 0) -> LedgerReport:
    """``refused``: how many refused submissions ``state`` was gathered for (a run of refusals only is judged too)."""
    if not state.job_ids and not refused:
        raise EmptyLedger()
    report = LedgerReport(jobs=len(state.job_ids))
    for u in state.unsubmitted:
        report.add(
            "unsubmitted",
            u["id"],
            f"a {u['kind']} job ({u['status']}) on queue {u['queue']} that no client was told about",
        )
    for err in state.read_errors:
        report.add("topic_incomplete", "kafka", err)
    for jid in state.job_ids:
        row = state.rows.get(jid)
        if row is None:
            report.add("lost", jid, "accepted but not in Postgres (lost)")
            continue
        report.by_status[row["status"]] += 1
        if row["status"] not in TERMINAL:
            report.add("not_terminal", jid, f"not terminal in Postgres ({row['status']}): lost unless still running")
            continue
        if row["status"] == FAILED and not row.get("error_code"):
            report.add("failed_without_reason", jid, "failed without a recorded reason")
        _judge_cache(report, jid, row, state.cached.get(jid))
        _judge_results(report, jid, row, state.results.get(row["kind"], {}).get(jid, []))
        _judge_job_events(
            report, jid, row, state.job_events.get(jid, []), state.results.get(row["kind"], {}).get(jid, [])
        )
    for token, jobs in sorted(state.refused_rows.items()):
        for j in jobs:
            report.add(
                "refused_ran",
                token,
                f"refused by the API, yet recorded as job {j['id']} ({j['status']}, "
                f"{j['attempts']} attempt(s)): a client told 'no' may see it run",
            )
    _judge_dlq(report, state.dlq)
    _judge_failures(report, state)
    if state.outputs is not None:
        events: dict[str, list[dict]] = {}
        for per_job in state.results.values():
            for jid, got in per_job.items():
                events.setdefault(jid, []).extend(got)
        settled = {j: r for j, r in state.outputs.rows.items() if r["status"] in TERMINAL}
        outputs = content.Outputs(
            settled,
            state.outputs.results,
            state.outputs.objects,
            state.outputs.digests,
            state.outputs.s3_lost_before,
            state.outputs.stages,
        )
        judged = content.judge(outputs, state.cached, events)
        for kind, jid, text in judged.problems:
            report.add(kind, jid, text)
        report.content = judged.summary()
    return report


def _judge_failures(report: LedgerReport, state: StoreState) -> None:
    """Failed jobs beyond the failure budget (``{error_code: n}``, ``"*"`` for any reason; default none): each is
    named with its reason, since a job that failed 'with a reason' still did not do its work."""
    failed: dict[str, list[str]] = {}
    for jid in state.job_ids:
        row = state.rows.get(jid)
        if row is not None and row["status"] == FAILED:
            failed.setdefault(row.get("error_code") or "no reason", []).append(jid)
    spare = state.failures.get("*", 0)
    for code, jids in sorted(failed.items()):
        over = len(jids) - state.failures.get(code, 0)
        if over > 0 and spare > 0:
            used = min(spare, over)
            spare, over = spare - used, over - used
        if over > 0:
            allowed = state.failures.get(code, 0)
            for jid in jids:
                report.add(
                    "failed_unbudgeted",
                    jid,
                    f"failed ({code}): {len(jids)} job(s) failed so, the budget allows {allowed}"
                    + (f" (+{state.failures['*']} of any reason)" if state.failures.get("*") else "")
                    + f"; its reason: {str(state.rows[jid].get('error_message') or 'none recorded')[:300]}",
                )


def _judge_dlq(report: LedgerReport, dlq: list[dict]) -> None:
    for m in dlq:
        if m["job_id"] is None:
            why = "not a job message"
        elif m["status"] == FAILED and m["error_code"]:
            why = f"job failed: {m['error_code']}"
        else:
            report.add(
                "dlq_unexplained",
                f"DLQ message {m['message_id']}",
                f"for job {m['job_id']}, which is {m['status'] or 'unknown'} — unexplained",
            )
            continue
        report.dlq[why] = report.dlq.get(why, 0) + 1


def _judge_cache(report: LedgerReport, jid: str, row: dict, cached: str | None) -> None:
    try:
        status = json.loads(cached)["status"] if cached else None
    except (ValueError, KeyError, TypeError):
        status = f"unreadable {cached[:40]!r}"
    if status != row["status"]:
        report.add("redis_disagrees", jid, f"Redis says {status!r}, Postgres says {row['status']!r}")


def _judge_results(report: LedgerReport, jid: str, row: dict, got: list[dict]) -> None:
    for e in got:
        if e.get("status") != row["status"]:
            report.add("result_status", jid, f"Kafka event says {e.get('status')!r}, Postgres {row['status']!r}")
    if row["kind"] != "inference":
        if len(got) == 0:
            report.add("result_missing", jid, "0 Kafka result events, want 1")
        elif len(got) > 1:
            report.add("result_duplicate", jid, f"{len(got)} Kafka result events, want 1")
        return
    models = list((row.get("params") or {}).get("models") or [])
    if not models:
        report.add("no_models", jid, "an inference job whose params list no models (nothing was run)")
    per_model = Counter(e.get("model") for e in got)
    for model in models:
        n = per_model.get(model, 0)
        if n == 0:
            report.add("result_missing", jid, f"0 Kafka result events for {model}, want 1")
        elif n > 1:
            report.add("result_duplicate", jid, f"{n} Kafka result events for {model}, want 1")
    for model, n in sorted(per_model.items(), key=lambda kv: str(kv[0])):
        if model is None:
            report.add("result_unexpected", jid, f"{n} Kafka result event(s) with no model")
        elif model not in models:
            report.add("result_unexpected", jid, f"{n} Kafka result event(s) for {model!r}, which the job did not run")


def _judge_job_events(
    report: LedgerReport, jid: str, row: dict, got: list[dict], results: list[dict] | None = None
) -> None:
    """queued, running per attempt, one terminal (the record's status) last; nothing twice; as many running events
    as the record's attempts; its results after its (last) running event."""
    # judged in the order a consumer of the log meets them (one key, one partition: offset order), never re-sorted by
    # the id the publisher gave them: a publisher that sends a job's events out of order fails here
    got = sorted(got, key=lambda e: (e.get("_partition") or 0, e.get("_offset") or 0))
    seen = Counter((e.get("status"), e.get("attempts")) for e in got)
    for (status, attempts), n in sorted(seen.items(), key=str):
        if n > 1:
            report.add("events_duplicate", jid, f"job_events has {status!r} (attempt {attempts}) {n} times")
    statuses = [e.get("status") for e in got]
    terminal = [s for s in statuses if s in TERMINAL]
    missing = [s for s in OPEN if s not in statuses]
    if not terminal:
        missing.append(row["status"])
    if missing:
        report.add("events_missing", jid, f"job_events lacks {', '.join(missing)} (has {statuses})")
        return
    unique = list(dict.fromkeys(zip(statuses, [e.get("attempts") for e in got], strict=True)))
    path = [s for s, _ in unique]
    forward = (
        path[0] == QUEUED
        and path[-1] == row["status"]
        and len([s for s in path if s in TERMINAL]) == 1
        and all(s == RUNNING for s in path[1:-1])
        and [a for s, a in unique if s == RUNNING] == sorted(a for s, a in unique if s == RUNNING)
    )
    if not forward:
        report.add(
            "events_order",
            jid,
            f"job_events in the log's order {[f'{s}#{a}' for s, a in unique]} is not queued → running… → "
            f"{row['status']}",
        )
    attempts = {a for s, a in unique if s == RUNNING}
    if row.get("attempts") is not None and len(attempts) != row["attempts"]:
        report.add(
            "events_attempts", jid, f"{len(attempts)} running event(s) for {row['attempts']} attempt(s) in Postgres"
        )
    # a result comes from the job's last attempt, so it reaches the log after that attempt's running event: across
    # topics the log's order is the producer's timestamps (one producer clock per machine, milliseconds)
    last_running = max((e["_ts"] for e in got if e.get("status") == RUNNING and e.get("_ts") is not None), default=None)
    early = [
        r for r in results or [] if last_running is not None and r.get("_ts") is not None and r["_ts"] < last_running
    ]
    if early:
        report.add(
            "events_order",
            jid,
            f"{len(early)} result event(s) in the log before the job's running event "
            f"(by up to {last_running - min(r['_ts'] for r in early)} ms)",
        )


def check(
    stack,
    job_ids,
    topics: dict[str, str] | None = None,
    refused=(),
    dlq_name: str | None = None,
    journal: Journal | None = None,
    scope: list[str] | tuple = (),
    failures: dict[str, int] | None = None,
    contents: bool = True,
    s3_lost_before: float | None = None,
) -> LedgerReport:
    """The ledger over ``job_ids`` — or, given a ``journal``, over every id its clients were told was accepted and
    every submission they were told was refused (``job_ids`` and ``refused`` are then ignored). ``failures``: the
    failure budget (default: none may fail)."""
    if journal is not None:
        job_ids, refused = journal.accepted_ids, journal.refused_tokens
    ids = [str(j) for j in job_ids]
    n_refused = journal.refusals if journal is not None else len(refused)
    if not ids and not n_refused:
        raise EmptyLedger()  # before touching any store
    state = gather(
        stack,
        ids,
        topics,
        refused=refused,
        dlq_name=dlq_name,
        journal=journal,
        scope=scope,
        contents=contents,
        s3_lost_before=s3_lost_before,
    )
    state.failures = dict(failures or {})
    report = judge(state, refused=n_refused)
    if journal is not None:
        report.journal = journal.summary()
    if report.kinds["events_missing"] or report.kinds["result_missing"]:
        _explain_missing(stack, report)
    return report


def _explain_missing(stack, report: LedgerReport) -> None:
    """For each missing Kafka event, what the outbox says: never written, still waiting, or published (acknowledged
    by the broker) yet absent from the topic — three different bugs."""
    import psycopg

    missing = [i for i, p in enumerate(report.problems) if "[events_missing]" in p or "[result_missing]" in p]
    ids = list({report.problems[i].split(":", 1)[0] for i in missing})
    with psycopg.connect(stack.postgres.dsn) as conn:
        rows = conn.execute(
            "SELECT job_id::text, topic, payload->>'status', payload->>'model', published_at "
            "FROM outbox WHERE job_id = ANY(%s::uuid[]) ORDER BY id",
            (ids,),
        ).fetchall()
    by_job: dict[str, list[str]] = {}
    for jid, topic, status, model, published in rows:
        where = f"published {published:%H:%M:%S.%f}"[:-3] if published else "unpublished"
        by_job.setdefault(jid, []).append(f"{topic}:{status}{'/' + model if model else ''} {where}")
    for i in missing:
        jid = report.problems[i].split(":", 1)[0]
        report.problems[i] += f"; outbox: {', '.join(by_job.get(jid, [])) or 'no rows'}"


def settle(
    stack,
    job_ids=(),
    timeout: float = 30,
    interval: float = 0.5,
    topics=None,
    refused=(),
    dlq_name: str | None = None,
    journal: Journal | None = None,
    scope: list[str] | tuple = (),
    failures: dict[str, int] | None = None,
    s3_lost_before: float | None = None,
) -> LedgerReport:
    """``check`` until every store agrees or ``timeout`` passes; the last report either way. Problems waiting cannot
    mend (``FINAL``: a terminal job failed outside the budget, an output that differs from the reference, …) end the
    wait once two reads a second apart find the same ones.

    Postgres commits first, then Kafka is told, then Redis: right after a job turns terminal in Postgres the other
    two may lag by a moment (longer while a fault slows them), so a verdict waits for them, boundedly.
    """
    deadline = time.monotonic() + timeout
    before: list[str] | None = None
    while True:
        began = time.time()
        report = check(
            stack,
            job_ids,
            topics,
            refused=refused,
            dlq_name=dlq_name,
            journal=journal,
            scope=scope,
            failures=failures,
            s3_lost_before=s3_lost_before,
        )
        report.checked_at = began
        if report.ok or time.monotonic() > deadline:
            return report
        if sorted(report.problems) == before and set(report.kinds) <= FINAL:
            return report  # the same problems twice, none of which more waiting could mend
        before = sorted(report.problems)
        time.sleep(max(interval, 1.0) if set(report.kinds) <= FINAL else interval)


def as_dict(report: LedgerReport) -> dict:
    """A report as the runs save it (JSON)."""
    return {
        "jobs": report.jobs,
        "by_status": dict(report.by_status),
        "problems": report.problems[:50],
        "problem_count": len(report.problems),
        "kinds": dict(report.kinds),
        "dlq": report.dlq,
        "journal": report.journal,
        "content": report.content,
    }


def content_lines(report: LedgerReport) -> list[str]:
    """The content verdict as printed: what was checked, by kind and check, the tolerances, the mismatches."""
    c = report.content
    if not c:
        return ["  content: not judged"]
    lines = [
        f"  client journal: {report.journal.get('accepted', '?')} accepted, {report.journal.get('refused', '?')} "
        f"refused (by source {report.journal.get('by_source', {})}); the stores judged: {report.jobs} jobs"
    ]
    lines.append(
        f"  content: {sum(c['checked'].values())} outputs checked, {c['mismatches']} mismatches, "
        f"{report.kinds.get('failed_unbudgeted', 0)} failures outside the budget"
    )
    lines += [f"    {name:<34} {n:>6}" for name, n in c["checked"].items()]
    lines += [f"    not checked: {name} × {n}" for name, n in c["unchecked"].items()]
    lines.append("    tolerances: " + "; ".join(f"{k} {v:g}" for k, v in c["tolerances"].items()))
    return lines


def final_verdict(
    stack, journal: Journal, say, heading: str, scope=(), failures: dict[str, int] | None = None
) -> tuple[dict, int]:
    """A run's closing ledger (demo, capacity) over its client journal: print ``heading``, the verdict and the
    content verdict; (summary for the JSON, exit code)."""
    say(heading)
    report = settle(stack, journal=journal, scope=scope, failures=failures)
    say("  " + report.summary())
    for line in content_lines(report):
        say(line)
    return as_dict(report), 0 if report.ok else 1


def explain_dlq(stack, dlq_name: str) -> tuple[dict[str, int], list[str]]:
    """Every message in the DLQ, explained: a job marked failed with its reason, or a body that is no job at all.
    Returns (counts by explanation, problems)."""
    report = LedgerReport()
    _judge_dlq(report, _read_dlq(stack, dlq_name))
    return report.dlq, report.problems
