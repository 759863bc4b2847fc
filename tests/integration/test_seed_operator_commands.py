"""The time-series design's (001) operator commands, run as the document prints them, against Verisim's stores:
its SQL over ``inference_results`` (psql), ``KEYS job:*`` / ``GET job:status:<id>`` (redis-cli) and the
``inference_results`` topic read from the beginning."""

from __future__ import annotations

import json
import subprocess

from harness.drivers.events import read_topic
from harness.polling import wait_for

# verbatim from the design document ("PostgreSQL 데이터 확인")
DESIGN_SQL = """SELECT
    model_name,
    COUNT(*) as total,
    AVG(EXTRACT(EPOCH FROM (completed_at - created_at))) as avg_time
FROM inference_results
WHERE created_at > NOW() - INTERVAL '10 minutes'
GROUP BY model_name;"""


def test_the_designs_sql_redis_and_kafka_commands_see_the_jobs(system, stack):
    with system.client() as c:
        body = {
            "series": [
                {"pattern": p, "values": [float(i % 7) for i in range(30)], "actual": [1.0, 2.0], "horizon": 2}
                for p in ("linear", "seasonal", "cyclical")
            ]
        }
        ids = c.post("/api/v1/inference", json=body).json()["job_ids"]
        wait_for(
            lambda: all(c.get(f"/api/v1/jobs/{j}").json()["status"] == "completed" for j in ids),
            60,
            what="the jobs completed",
        )

    out = subprocess.run(
        ["psql", stack.postgres.dsn, "--csv", "-c", DESIGN_SQL], capture_output=True, text=True, timeout=30, check=True
    ).stdout.splitlines()
    assert out[0] == "model_name,total,avg_time", out
    rows = {line.split(",")[0]: (int(line.split(",")[1]), float(line.split(",")[2])) for line in out[1:]}
    assert {"lstm", "moving_average"} <= set(rows), rows
    for model in ("lstm", "moving_average"):
        total, avg_time = rows[model]
        assert total >= len(ids) and 0 < avg_time < 60, rows  # accepted -> result committed, in seconds

    keys = subprocess.run(
        ["redis-cli", "-u", stack.redis.url, "KEYS", "job:*"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    assert {f"job:status:{j}" for j in ids} <= set(keys)
    cached = subprocess.run(
        ["redis-cli", "-u", stack.redis.url, "GET", f"job:status:{ids[0]}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert json.loads(cached)["status"] == "completed"

    events = [m["value"] for m in read_topic(stack.kafka.bootstrap_servers, "inference_results")]
    mine = [e for e in events if e.get("job_id") in ids]
    assert sorted((e["job_id"], e["model"]) for e in mine) == sorted(
        (j, m) for j in ids for m in ("lstm", "moving_average")
    )
