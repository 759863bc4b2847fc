"""The system under test end to end: both job kinds through one lifecycle, visible alike in Postgres, Redis, Kafka."""

from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg
import pytest
from websockets.sync.client import connect as ws_connect

from harness.drivers.events import by_key, read_topic
from harness.drivers.system_under_test import TRANSPORTS, running_system
from harness.oracles import ledger
from harness.oracles.contract import TERMINAL
from harness.polling import wait_for
from harness.pytest_plugin import SYSTEM_ENV
from system.simulators import scores

MUSICXML = scores.musicxml()


@pytest.fixture(scope="module")
def system(system, transport, stack, tmp_path_factory):
    """These tests run on each transport (``--transport`` picks one): the session's system where it runs on it,
    else one of this module's own."""
    if system.transport == transport:
        yield system
        return
    with running_system(stack, tmp_path_factory.mktemp(f"system-{transport}"), SYSTEM_ENV, transport=transport) as sut:
        yield sut


def wait_terminal(client, job_id, timeout=30):
    def done():
        body = client.get(f"/api/v1/jobs/{job_id}").json()
        return body if body.get("status") in TERMINAL else None

    return wait_for(done, timeout, what=f"job {job_id} terminal")


def series(pattern="linear", n=20, **extra):
    return {
        "pattern": pattern,
        "values": [float(i) for i in range(n)],
        "actual": [float(n), float(n + 1)],
        "horizon": 2,
        "metadata": {"source": "test"},
        **extra,
    }


def test_inference_job_is_completed_alike_in_postgres_redis_and_kafka(system, stack):
    with system.client() as c:
        r = c.post("/api/v1/inference", json=series(models=["lstm", "moving_average", "linear_trend"], window=4))
        assert r.status_code == 202, r.text
        [job_id] = r.json()["job_ids"]
        body = wait_terminal(c, job_id)
    assert body["status"] == "completed"
    assert set(body["result"]["models"]) == {"lstm", "moving_average", "linear_trend"}
    trend = body["result"]["models"]["linear_trend"]
    assert trend["prediction"] == pytest.approx([20.0, 21.0]) and trend["mae"] == pytest.approx(0, abs=1e-9)
    ma = body["result"]["models"]["moving_average"]
    assert ma["prediction"][0] == pytest.approx(17.5)  # mean of 16..19: the job's own window was used
    lstm = body["result"]["models"]["lstm"]
    assert len(lstm["prediction"]) == 2 and lstm["mae"] < 2.0  # a trained model follows a clean line

    with psycopg.connect(stack.postgres.dsn) as conn:
        status, started, finished, enqueued = conn.execute(
            "SELECT status, started_at, finished_at, enqueued_at FROM jobs WHERE id=%s", (job_id,)
        ).fetchone()
        models = conn.execute(
            "SELECT model_name FROM inference_results WHERE job_id=%s ORDER BY 1", (job_id,)
        ).fetchall()
        stages = {s for (s,) in conn.execute("SELECT stage FROM job_stages WHERE job_id=%s", (job_id,))}
    assert status == "completed" and enqueued <= started <= finished
    assert models == [("linear_trend",), ("lstm",), ("moving_average",)]
    assert {"validate", "model:lstm", "model:moving_average", "model:linear_trend"} <= stages

    report = ledger.settle(stack, [job_id])
    assert report.ok, report.summary()
    events = by_key(read_topic(stack.kafka.bootstrap_servers, "job_events"))[job_id]
    assert [e["status"] for e in sorted(events, key=lambda e: e["event_id"])] == ["queued", "running", "completed"]


def test_score_job_is_completed_with_its_upload_in_s3(system, stack):
    with system.client() as c:
        r = c.post(
            "/api/v1/scores",
            files={"file": ("ave.musicxml", MUSICXML, "application/xml")},
            data={"title": "Ave Maria", "target_language": "Korean"},
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert r.json()["format"] == "musicxml"
        body = wait_terminal(c, job_id)
    assert body["status"] == "completed", body
    assert body["result"]["translation"]["language"] == "Korean"
    assert body["result"]["translation"]["title"] == "[mock] Ave Maria"
    s3 = stack.aws.client("s3")
    stored = s3.get_object(Bucket=stack.aws.bucket, Key=f"uploads/{job_id}/input")
    assert stored["Body"].read() == MUSICXML
    import httpx

    assert httpx.get(body["artifacts"]["input"]).content == MUSICXML  # the presigned link works
    report = ledger.settle(stack, [job_id])
    assert report.ok, report.summary()


def test_a_batch_shows_up_on_the_dashboard_api(system):
    patterns = ["linear", "seasonal", "exponential", "cyclical", "random_walk"]
    with system.client() as c:
        before = c.get("/api/v1/dashboard/live-stats").json()
        r = c.post("/api/v1/inference", json={"series": [series(p) for p in patterns]})
        assert r.status_code == 202 and r.json()["count"] == 5
        for jid in r.json()["job_ids"]:
            wait_terminal(c, jid)
        stats = c.get("/api/v1/dashboard/live-stats").json()
        assert stats["total"] >= before["total"] + 5 and stats["completed"] >= before["completed"] + 5
        assert stats["throughput_per_minute"] >= 5 and 0 < stats["success_rate"] <= 1
        seen = {p["pattern"] for p in c.get("/api/v1/dashboard/patterns").json()["patterns"]}
        assert set(patterns) <= seen
        comparison = c.get("/api/v1/dashboard/model-comparison").json()
        assert {m["model"] for m in comparison["models"]} >= {"lstm", "moving_average"}
        assert all(m["avg_inference_ms"] > 0 for m in comparison["models"])
        recent = c.get("/api/v1/dashboard/recent", params={"limit": 10}).json()["results"]
        assert len(recent) == 10 and {r["job_id"] for r in recent} & set(r.json()["job_ids"])
        metrics = c.get("/metrics").text
        from prometheus_client.parser import text_string_to_metric_families

        jobs = next(f for f in text_string_to_metric_families(metrics) if f.name == "verisim_jobs")
        assert {"queue": system.queue_name, "kind": "inference", "state": "completed"} in [
            s.labels for s in jobs.samples
        ]
        assert_prometheus_metrics(metrics, system.queue_name)
        assert_prometheus_scrapes_the_api_and_every_worker(system)
        ready = c.get("/readyz").json()
        brokers = set(TRANSPORTS[system.transport].values())  # each transport its jobs travel on, no other
        assert ready["status"] == "ready" and set(ready["checks"]) == {"postgres", "redis", "s3", "kafka", *brokers}


def test_websocket_pushes_every_state_change(system):
    url = system.api_url.replace("http://", "ws://") + "/api/v1/dashboard/ws"
    seen: list[dict] = []
    with ws_connect(url, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"
        with system.client() as c:
            job_id = c.post("/api/v1/inference", json=series("seasonal")).json()["job_ids"][0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv(timeout=30))
            if msg.get("job_id") == job_id:
                seen.append(msg)
                if msg["status"] in TERMINAL:
                    break
    statuses = [m["status"] for m in seen]
    assert statuses[-1] == "completed" and "running" in statuses


@pytest.mark.parametrize(
    "payload, fragment",
    [
        ({"pattern": "sawtooth", "values": [1, 2, 3]}, "pattern"),
        ({"pattern": "linear", "values": []}, "values"),
        ({"pattern": "linear", "values": [1, "two", 3]}, "valid number"),
        ({"pattern": "linear"}, "values"),
        ({"pattern": "linear", "values": [1, 2], "models": ["oracle"]}, "unknown model"),
        ({"series": []}, "series"),
        ({"series": None}, "valid list"),
        ({"series": [None]}, "series"),
    ],
    ids=[
        "unknown-pattern",
        "empty-series",
        "non-numeric",
        "missing-values",
        "unknown-model",
        "empty-batch",
        "null-batch",
        "null-series",
    ],
)
def test_bad_inference_input_gets_a_4xx_with_a_message(system, payload, fragment):
    with system.client() as c:
        r = c.post("/api/v1/inference", json=payload)
    assert r.status_code == 422, r.text
    assert fragment in r.text


@pytest.mark.parametrize(
    "name, content, status, fragment",
    [
        ("empty.musicxml", b"", 400, "empty"),
        ("big.musicxml", b"<score-partwise>" + b" " * 1_000_001, 413, "larger than"),
        ("photo.musicxml", b"\x00\x01 definitely not a score" * 10, 415, "accepted"),
        ("score.pdf.exe", b"MZ\x90\x00" + b"\x00" * 100, 415, "MusicXML"),
    ],
    ids=["empty", "oversize", "unsupported-content", "lying-extension"],
)
def test_bad_uploads_get_a_4xx_with_a_message(system, name, content, status, fragment):
    with system.client() as c:
        r = c.post("/api/v1/scores", files={"file": (name, content)})
    assert r.status_code == status, r.text
    assert fragment in r.json()["detail"]


def test_unknown_job_ids_get_404_and_malformed_ones_422(system):
    with system.client() as c:
        assert c.get(f"/api/v1/jobs/{uuid.uuid4()}").status_code == 404
        assert c.get("/api/v1/jobs/not-a-uuid").status_code == 422


def test_s3_keys_come_from_job_ids_never_from_filenames(system, stack):
    with system.client() as c:
        r = c.post("/api/v1/scores", files={"file": ("../../etc/passwd.musicxml", MUSICXML)})
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    keys = [
        o["Key"]
        for o in stack.aws.client("s3").list_objects_v2(Bucket=stack.aws.bucket, Prefix="uploads/").get("Contents", [])
    ]
    assert f"uploads/{job_id}/input" in keys
    assert not [k for k in keys if "passwd" in k or ".." in k]


def test_a_redelivered_message_never_produces_a_second_result(system, stack):
    with system.client() as c:
        job_id = c.post("/api/v1/inference", json=series("cyclical")).json()["job_ids"][0]
        first = wait_terminal(c, job_id)
        # the same message again, as an at-least-once queue (SQS, Celery on Redis) may deliver it
        system.send_message({"job_id": job_id, "kind": "inference", "v": 1})
        wait_for(
            lambda: any(
                r["msg"].startswith("duplicate delivery") and r.get("job_id") == job_id
                for r in system.log_records("INFO")
            ),
            30,
            what="duplicate consumed",
        )
        again = c.get(f"/api/v1/jobs/{job_id}").json()
    assert again["finished_at"] == first["finished_at"] and again["attempts"] == first["attempts"]
    report = ledger.settle(stack, [job_id])
    assert report.ok, report.summary()


def test_concurrent_submissions_all_end_terminal_with_nothing_lost(system, stack):
    job_ids: list[str] = []
    lock = threading.Lock()

    def submit(k):
        with system.client() as c:
            r = c.post("/api/v1/inference", json={"series": [series("random_walk", 10 + k) for _ in range(4)]})
            assert r.status_code == 202
            with lock:
                job_ids.extend(r.json()["job_ids"])

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(job_ids) == 40
    with system.client() as c:
        for jid in job_ids:
            wait_terminal(c, jid, timeout=60)
    report = ledger.settle(stack, job_ids)
    assert report.ok, report.summary()
    assert report.by_status == {"completed": 40}


def assert_prometheus_metrics(text: str, queue: str) -> None:
    """The figures the generated alerting rules read (deploy/prometheus/verisim-rules.yml) are served, by route
    template and per queue, and pass ``promtool check metrics`` (Prometheus' naming conventions)."""
    import subprocess

    from prometheus_client.parser import text_string_to_metric_families

    from harness.oracles.prometheus_rules import promtool

    samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "verisim_http_request_duration_seconds",
        "verisim_http_requests",
        "verisim_job_queue_wait_seconds",
        "verisim_job_turnaround_seconds",
        "verisim_job_redeliveries",
        "verisim_dead_letter_messages",
        "verisim_stage_duration_seconds",
        "verisim_queue_messages",
    } <= families, families
    assert 'verisim_http_requests_total{code="202",method="POST",route="/api/v1/inference"}' in text
    assert 'route="/api/v1/jobs/{job_id}"' in text  # the template, not one series per job id
    assert f'verisim_job_turnaround_seconds_count{{kind="inference",queue="{queue}"}}' in text
    assert samples["verisim_http_request_duration_seconds_count"].value >= 1
    checked = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def assert_prometheus_scrapes_the_api_and_every_worker(system) -> None:
    """The stack's Prometheus scrapes this system's API and each of its workers (SQS or Celery: each serves its own
    /metrics), and reads the workers' counts of the messages they acknowledged."""
    from harness.drivers.prometheus import PrometheusClient
    from harness.polling import wait_for

    prom = PrometheusClient(system.stack.prometheus)
    sel = f'system="{system.queue_name}"'

    def up() -> dict[str, list[float]]:
        got: dict[str, list[float]] = {}
        for labels, value in prom.query(f"up{{{sel}}}"):
            got.setdefault(labels["component"], []).append(value)
        return got

    alive = [w for w in system.workers if w.leftovers()]  # a worker an earlier test killed is scraped as down

    def scraped() -> bool:
        u = up()
        return u.get("api") == [1.0] and u.get("worker", []).count(1.0) == len(alive) >= 1

    wait_for(scraped, 20, what=f"Prometheus scraping the API and {len(alive)} worker(s)")

    def acked() -> float:  # the batch's last acknowledgement may come after the latest scrape
        got = prom.query(f'sum(verisim_worker_messages_total{{{sel},action="ack"}})')
        return got[0][1] if got else 0.0

    wait_for(lambda: acked() >= 5, 20, what="the workers' acknowledged messages in Prometheus")
