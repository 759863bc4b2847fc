"""The ledger: after a run, every accepted job is in exactly one terminal state, and every store agrees.

For each job id: Postgres (the record) holds a terminal status; Redis ``job:status:<id>`` shows the same status;
Kafka holds exactly one result event per job and model (inference) or per job (score), with that status.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import psycopg
import redis
from psycopg.rows import dict_row

from harness.events import by_key, read_topic
from harness.stack.endpoints import Stack

TERMINAL = {"completed", "completed_with_warnings", "failed"}
RESULT_TOPICS = {"inference": "inference_results", "score": "score_results"}


@dataclass
class LedgerReport:
    jobs: int = 0
    by_status: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    checked_at: float | None = None  # wall clock when the check that produced this report began reading

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = f"{self.jobs} jobs: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items()))
        if self.ok:
            return head + "; every store agrees"
        return head + f"; {len(self.problems)} problem(s):\n  " + "\n  ".join(self.problems[:50])


def check(stack: Stack, job_ids, topics: dict[str, str] | None = None) -> LedgerReport:
    topics = topics or RESULT_TOPICS
    ids = [str(j) for j in job_ids]
    report = LedgerReport(jobs=len(ids))
    with psycopg.connect(stack.postgres.dsn, row_factory=dict_row) as conn:
        rows = {str(r["id"]): r for r in conn.execute(
            "SELECT id, kind, status, params, error_code FROM jobs WHERE id = ANY(%s::uuid[])", (ids,))}
    r = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    cached = dict(zip(ids, r.mget([f"job:status:{i}" for i in ids]) if ids else [], strict=True))
    r.close()
    events = {kind: by_key(read_topic(stack.kafka.bootstrap_servers, topic)) for kind, topic in topics.items()}
    for jid in ids:
        row = rows.get(jid)
        if row is None:
            report.problems.append(f"{jid}: accepted but not in Postgres (lost)")
            continue
        report.by_status[row["status"]] += 1
        if row["status"] not in TERMINAL:
            report.problems.append(f"{jid}: not terminal in Postgres ({row['status']})")
            continue
        if row["status"] == "failed" and not row["error_code"]:
            report.problems.append(f"{jid}: failed without a recorded reason")
        status = json.loads(cached[jid])["status"] if cached.get(jid) else None
        if status != row["status"]:
            report.problems.append(f"{jid}: Redis says {status!r}, Postgres says {row['status']!r}")
        got = events[row["kind"]].get(jid, [])
        if row["kind"] == "inference":
            per_model = Counter(e.get("model") for e in got)
            for model in row["params"].get("models") or []:
                if per_model.get(model, 0) != 1:
                    report.problems.append(f"{jid}: {per_model.get(model, 0)} Kafka result events for {model}, want 1")
        elif len(got) != 1:
            report.problems.append(f"{jid}: {len(got)} Kafka result events, want 1")
        for e in got:
            if e.get("status") != row["status"]:
                report.problems.append(f"{jid}: Kafka event says {e.get('status')!r}, Postgres {row['status']!r}")
    return report


def settle(stack: Stack, job_ids, timeout: float = 30, interval: float = 0.5, topics=None) -> LedgerReport:
    """``check`` until every store agrees or ``timeout`` passes; the last report either way.

    Postgres commits first, then Kafka is told, then Redis: right after a job turns terminal in Postgres the other
    two may lag by a moment (longer while a fault slows them), so a verdict waits for them, boundedly.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        began = time.time()
        report = check(stack, job_ids, topics)
        report.checked_at = began
        if report.ok or time.monotonic() > deadline:
            return report
        time.sleep(interval)


def explain_dlq(stack: Stack, dlq_name: str) -> tuple[dict[str, int], list[str]]:
    """Every message in the DLQ, explained: a job marked failed with its reason, or a body that is no job at all.

    Messages are peeked (received with visibility 0), not removed. Returns (counts by explanation, problems).
    """
    sqs = stack.aws.client("sqs")
    url = sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]
    seen: dict[str, str] = {}
    for _ in range(20):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0,
                                  AttributeNames=["All"]).get("Messages", [])
        new = [m for m in got if m["MessageId"] not in seen]
        if not new:
            break
        for m in new:
            seen[m["MessageId"]] = m["Body"]
    counts: Counter = Counter()
    problems = []
    ids = {}
    for mid, body in seen.items():
        try:
            ids[mid] = str(json.loads(body)["job_id"])
        except (ValueError, KeyError, TypeError):
            counts["not a job message"] += 1
    if ids:
        with psycopg.connect(stack.postgres.dsn) as conn:
            rows = {str(r[0]): r[1:] for r in conn.execute(
                "SELECT id, status, error_code FROM jobs WHERE id = ANY(%s::uuid[])", (list(ids.values()),))}
        for mid, jid in ids.items():
            status, code = rows.get(jid, (None, None))
            if status == "failed" and code:
                counts[f"job failed: {code}"] += 1
            else:
                problems.append(f"DLQ message {mid} for job {jid}, which is {status or 'unknown'} — unexplained")
    return dict(counts), problems
