"""The main job (`nox -s demo`): bring the local stack up, push a bounded mixed load through it, summarise.

Until the system under test lands (issue #4) the load goes straight through the backing services the system will
use — SQS jobs sent/received/deleted, chat completions through the mock OpenAI service with faults on, Kafka
result events, Redis status keys and Postgres rows — so the numbers are the ceilings the system will be measured against.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

from harness.stack import choose_provider


class Progress:
    def __init__(self, label: str, total: int):
        self.label, self.total, self.done, self.failed = label, total, 0, 0
        self.started = time.monotonic()
        self._last = 0.0

    def tick(self, ok: bool = True, n: int = 1) -> None:
        self.done += n
        self.failed += 0 if ok else n
        now = time.monotonic()
        if now - self._last > 0.2 or self.done >= self.total:
            self._last = now
            rate = self.done / max(now - self.started, 1e-9)
            sys.stdout.write(f"\r  {self.label:<28} {self.done:>5}/{self.total} failed {self.failed:<4} {rate:8.1f}/s")
            sys.stdout.flush()

    def finish(self) -> dict:
        elapsed = time.monotonic() - self.started
        sys.stdout.write("\n")
        return {"count": self.done, "failed": self.failed, "seconds": round(elapsed, 3),
                "per_second": round(self.done / max(elapsed, 1e-9), 1)}


def sqs_phase(stack, n: int) -> dict:
    sqs = stack.aws.client("sqs")
    url = sqs.get_queue_url(QueueName=stack.aws.queue_name)["QueueUrl"]
    p = Progress("SQS send", n)
    for start in range(0, n, 10):
        entries = [{"Id": str(i), "MessageBody": json.dumps({"job_id": str(uuid.uuid4()), "n": start + i})}
                   for i in range(min(10, n - start))]
        failed = sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
        p.tick(ok=not failed, n=len(entries))
    sent = p.finish()
    p = Progress("SQS receive+delete", n)
    deadline = time.monotonic() + 120
    while p.done < n and time.monotonic() < deadline:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if msgs:
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
            p.tick(n=len(msgs))
    received = p.finish()
    return {"send": sent, "receive_delete": received, "lost": n - received["count"]}


def openai_phase(stack, n: int) -> dict:
    import httpx
    import openai

    httpx.patch(f"{stack.openai.admin_url}/config", json={"error_rate": 0.1, "jitter_seconds": 0.05, "seed": 1})
    client = openai.OpenAI(base_url=stack.openai.base_url, api_key=stack.openai.api_key, max_retries=2)
    p = Progress("chat completions (10% 500s)", n)
    latencies = []
    for i in range(n):
        t = time.monotonic()
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"job {i}"}])
            latencies.append(time.monotonic() - t)
            p.tick()
        except openai.APIError:
            p.tick(ok=False)
    out = p.finish()
    seen = httpx.get(f"{stack.openai.admin_url}/requests").json()["requests"]
    out.update(p50_ms=round(statistics.median(latencies) * 1000, 1) if latencies else None,
               upstream_requests=len(seen), upstream_errors=sum(r["status"] >= 500 for r in seen))
    return out


def kafka_redis_postgres_phase(stack, n: int) -> dict:
    import psycopg
    import redis
    from confluent_kafka import Producer

    r = redis.Redis.from_url(stack.redis.url)
    producer = Producer({"bootstrap.servers": stack.kafka.bootstrap_servers, "enable.idempotence": True})
    p = Progress("status: Postgres+Redis+Kafka", n)
    with psycopg.connect(stack.postgres.dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS demo_jobs (id uuid PRIMARY KEY, state text, at timestamptz)")
        for _ in range(n):
            job = str(uuid.uuid4())
            conn.execute("INSERT INTO demo_jobs VALUES (%s, 'completed', now())", (job,))
            r.set(f"job:status:{job}", "completed", ex=3600)
            producer.produce("inference_results", key=job, value=json.dumps({"job_id": job, "status": "completed"}))
            producer.poll(0)
            p.tick()
        conn.commit()
    undelivered = producer.flush(10)
    out = p.finish()
    out["kafka_undelivered"] = undelivered
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--stack", default="local", choices=("auto", "local", "containers"),
                    help="where the backing services run (default: local, the embedded default)")
    ap.add_argument("--jobs", type=int, default=500, help="SQS jobs to push through (default 500)")
    ap.add_argument("--chats", type=int, default=40, help="chat completions against the mock (default 40)")
    args = ap.parse_args(argv)

    provider = choose_provider(args.stack, progress=print)
    summary: dict = {}
    try:
        stack = provider.start()
        summary["stack_ready_seconds"] = stack.ready_seconds
        print("\nload:")
        summary["sqs"] = sqs_phase(stack, args.jobs)
        summary["openai"] = openai_phase(stack, args.chats)
        summary["status_writes"] = kafka_redis_postgres_phase(stack, min(args.jobs, 300))
    except KeyboardInterrupt:
        print("\ninterrupted")
    finally:
        provider.stop()
    out = Path("reports") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print("\nsummary:")
    if "sqs" in summary:
        s = summary["sqs"]
        print(f"  SQS: {s['send']['per_second']} sent/s, {s['receive_delete']['per_second']} received+deleted/s, "
              f"{s['lost']} lost")
    if "openai" in summary:
        o = summary["openai"]
        print(f"  mock OpenAI: {o['count'] - o['failed']}/{o['count']} completed, p50 {o['p50_ms']} ms, "
              f"{o['upstream_requests']} upstream requests ({o['upstream_errors']} injected 5xx retried by the SDK)")
    if "status_writes" in summary:
        w = summary["status_writes"]
        print(f"  status writes to Postgres+Redis+Kafka: {w['per_second']}/s, {w['kafka_undelivered']} undelivered")
    print(f"  figures saved to {out}")
    failed = not summary.get("sqs") or summary["sqs"]["lost"] or summary.get("status_writes", {}).get("kafka_undelivered")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
