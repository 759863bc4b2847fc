"""The metrics a worker and the load generator serve for Prometheus (system/worker/metrics.py,
harness/drivers/locust_metrics.py): each figure counted as it happens, every outcome's series there from the start, and names
that pass ``promtool check metrics``."""

from __future__ import annotations

import subprocess

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from harness.drivers.locust_metrics import LoadMetrics
from harness.oracles.prometheus_rules import promtool
from system.worker.metrics import WorkerMetrics


def samples(registry) -> dict[tuple, float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def promtool_passes(registry) -> None:
    done = subprocess.run(
        [promtool(), "check", "metrics"], input=generate_latest(registry), capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_worker_counts_its_batches_and_each_message_s_outcome():
    held = {"n": 3}
    m = WorkerMetrics("jobs-q", "sqs", lambda: held["n"])
    q = (("queue", "jobs-q"), ("transport", "sqs"))
    before = samples(m.registry)
    assert before[("verisim_worker_messages_total", (("action", "dead_letter"), *q))] == 0  # there before any message
    m.observe(["ack", "ack", "retry"], 0.03)
    m.observe(["dead_letter"], 2.0)
    got = samples(m.registry)
    assert got[("verisim_worker_messages_total", (("action", "ack"), *q))] == 2
    assert got[("verisim_worker_messages_total", (("action", "retry"), *q))] == 1
    assert got[("verisim_worker_batch_messages_count", q)] == 2 and got[("verisim_worker_batch_messages_sum", q)] == 4
    assert got[("verisim_worker_batch_duration_seconds_bucket", (("le", "0.05"), *q))] == 1
    assert got[("verisim_worker_inflight_jobs", q)] == 3
    assert any(name == "process_cpu_seconds_total" for name, _ in got)
    promtool_passes(m.registry)


def test_a_worker_still_being_built_reads_no_jobs_in_hand():
    class Building:
        def count(self):
            return len(self.inflight)  # set later in the worker's constructor

    m = WorkerMetrics("q", "celery", Building().count)
    assert samples(m.registry)[("verisim_worker_inflight_jobs", (("queue", "q"), ("transport", "celery")))] == 0


def test_the_load_generator_counts_each_request_from_the_client_s_side():
    m = LoadMetrics()
    m.users.set_function(lambda: 20)
    m.request("POST", "POST /api/v1/inference", 120.0, failed=False)
    m.request("POST", "POST /api/v1/inference", 480.0, failed=True)
    got = samples(m.registry)
    key = (("name", "POST /api/v1/inference"), ("type", "POST"))
    assert (
        got[
            (
                "verisim_load_requests_total",
                (("name", "POST /api/v1/inference"), ("outcome", "failed"), ("type", "POST")),
            )
        ]
        == 1
    )
    assert got[("verisim_load_request_duration_seconds_bucket", (("le", "0.15"), *key))] == 1
    assert got[("verisim_load_request_duration_seconds_bucket", (("le", "0.5"), *key))] == 2
    assert got[("verisim_load_users", ())] == 20
    promtool_passes(m.registry)
