"""A worker process's own Prometheus metrics, served at ``/metrics`` on ``WORKER_METRICS_HOST:WORKER_METRICS_PORT``
(port 0, the default: not served). What the stores say about jobs is the API's to serve (``system/api/metrics.py``);
this is what only the worker sees: the deliveries it took together, how long each batch took, what became of each
message, the jobs it has in hand, and its own CPU and memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

log = logging.getLogger("system.worker.metrics")

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class WorkerMetrics:
    def __init__(self, queue: str, transport: str, inflight: Callable[[], int]):
        self.registry = CollectorRegistry()
        labels = ["queue", "transport"]
        self.labels = (queue, transport)
        ProcessCollector(registry=self.registry)
        self.batch_messages = Histogram(
            "verisim_worker_batch_messages",
            "messages a worker took to their outcomes together (one receive's inference jobs, or one message)",
            labels,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "verisim_worker_batch_duration_seconds",
            "time from a batch's delivery to its outcomes (claim, pipelines, commit)",
            labels,
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.messages = Counter(
            "verisim_worker_messages",
            "delivered messages by what became of them: ack, retry or dead_letter",
            [*labels, "action"],
            registry=self.registry,
        )
        for action in ("ack", "retry", "dead_letter"):  # every outcome's series exists from the start, at 0
            self.messages.labels(queue, transport, action)
        gauge = Gauge(
            "verisim_worker_inflight_jobs",
            "messages the worker holds (running or queued)",
            labels,
            registry=self.registry,
        )
        gauge.labels(queue, transport).set_function(lambda: _or_zero(inflight))

    def observe(self, actions: list[str], seconds: float) -> None:
        self.batch_messages.labels(*self.labels).observe(len(actions))
        self.batch_seconds.labels(*self.labels).observe(seconds)
        for action in actions:
            self.messages.labels(*self.labels, action).inc()

    def serve(self, host: str, port: int) -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
            log.info("worker metrics served", extra={"url": f"http://{host}:{port}/metrics"})


def _or_zero(count: Callable[[], int]) -> float:
    """A scrape that comes while the worker is still being built reads 0, not an error."""
    try:
        return float(count())
    except AttributeError:
        return 0.0
