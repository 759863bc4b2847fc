"""Prometheus ``/metrics``: queue depth and in-flight from SQS, jobs by state and stage durations from Postgres."""

from __future__ import annotations

import logging

from prometheus_client.core import CollectorRegistry, GaugeMetricFamily, HistogramMetricFamily

log = logging.getLogger("system.api.metrics")
BUCKETS_MS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]


class SystemCollector:
    def __init__(self, deps):
        self.deps = deps

    def collect(self):
        try:
            depth = self.deps.queue.depth()
            g = GaugeMetricFamily("verisim_queue_messages", "SQS messages by state", labels=["queue", "state"])
            for state in ("visible", "in_flight", "delayed"):
                g.add_metric([self.deps.settings.sqs_queue_name, state], depth[state])
            g.add_metric([self.deps.settings.dlq_name, "visible"], depth["dlq"])
            yield g
        except Exception as exc:
            log.warning("queue depth unavailable: %s", exc)
        with self.deps.store.pool.connection() as conn:
            jobs = GaugeMetricFamily("verisim_jobs", "jobs by kind and state", labels=["kind", "state"])
            for r in conn.execute("SELECT kind, status, count(*) AS n FROM jobs GROUP BY 1, 2"):
                jobs.add_metric([r["kind"], r["status"]], r["n"])
            yield jobs
            hist = HistogramMetricFamily("verisim_stage_duration_milliseconds", "job stage durations", labels=["stage"])
            cases = ", ".join(f"count(*) FILTER (WHERE duration_ms <= {b}) AS le_{b}" for b in BUCKETS_MS)
            for r in conn.execute(
                f"SELECT stage, count(*) AS n, coalesce(sum(duration_ms), 0) AS s, {cases} "
                "FROM job_stages WHERE duration_ms IS NOT NULL GROUP BY stage"
            ):
                buckets = [(str(b), r[f"le_{b}"]) for b in BUCKETS_MS] + [("+Inf", r["n"])]
                hist.add_metric([r["stage"]], buckets, r["s"])
            yield hist


def make_registry(deps) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SystemCollector(deps))
    return registry
