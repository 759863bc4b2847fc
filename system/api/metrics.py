"""Prometheus ``/metrics``, named and labelled as Prometheus' conventions ask (base units, ``_total`` counters).

- Requests, measured by the API as it answers them: ``verisim_http_request_duration_seconds`` (histogram) and
  ``verisim_http_requests_total`` by method, route template and status code.
- Read from the stores at each scrape: SQS messages by state and the dead letters; jobs by kind and state, each
  kind's queue wait (enqueued → started) and turnaround (enqueued → finished) and the redeliveries (attempts after
  the first) from Postgres, the system of record, per queue; each stage's duration from ``job_stages``.

The histograms' bucket bounds include every latency target the suite's SLO file sets for the figure, so a quantile
that Prometheus interpolates is exact at the threshold an alert compares it with.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Histogram
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

log = logging.getLogger("system.api.metrics")

REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.35, 0.4, 0.5, 0.7, 1.0, 1.5, 2.5, 5.0, 10.0)
QUEUE_BUCKETS_S = (0.05, 0.1, 0.25, 0.4, 0.8, 1.0, 2.0, 3.0, 6.0, 10.0, 30.0, 60.0, 300.0)
STAGE_BUCKETS_S = (0.00001, 0.00005, 0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class HttpMetrics:
    """The API's request histogram and counter, on the app's own registry (several apps may share one process)."""

    def __init__(self, registry: CollectorRegistry):
        labels = ["method", "route"]
        self.duration = Histogram(
            "verisim_http_request_duration_seconds",
            "time to answer a request, by method and route template",
            labels,
            registry=registry,
            buckets=REQUEST_BUCKETS_S,
        )
        self.requests = Counter(
            "verisim_http_requests",
            "requests answered, by method, route template and status code",
            [*labels, "code"],
            registry=registry,
        )

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        self.duration.labels(method, route).observe(seconds)
        self.requests.labels(method, route, str(code)).inc()


class RequestMetrics:
    """ASGI middleware: each HTTP request's time to its last body byte and its status code, by the route template
    the router matched (``/api/v1/jobs/{job_id}``, not each id; ``unmatched`` when none did). An exception no handler
    answered counts as the 500 the server then sends."""

    def __init__(self, app, metrics: HttpMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        code = 500

        async def sending(message):
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(scope["method"], route, code, time.perf_counter() - started)


def _histogram(name: str, doc: str, labels: list[str], rows, prefix: str, bounds) -> HistogramMetricFamily:
    """A histogram family from rows holding ``<prefix>n`` (count), ``<prefix>s`` (sum, seconds) and ``<prefix><i>``
    (count ≤ bounds[i])."""
    family = HistogramMetricFamily(name, doc, labels=labels)
    for r in rows:
        buckets = [(repr(float(b)), r[f"{prefix}{i}"]) for i, b in enumerate(bounds)] + [("+Inf", r[f"{prefix}n"])]
        family.add_metric([str(r[k]) for k in labels], buckets, float(r[f"{prefix}s"]))
    return family


def _by_queue_and_kind(rows: list[dict]) -> list[dict]:
    """``JobViews.job_figures``' job rows summed over the jobs' states: one row per queue and kind."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = (str(r["queue"]), r["kind"])
        if key not in out:
            out[key] = {**r, "queue": key[0]}
        else:
            for k, v in r.items():
                if k not in ("queue", "kind", "status"):
                    out[key][k] += v
    return list(out.values())


class SystemCollector:
    def __init__(self, deps):
        self.deps = deps

    def collect(self):
        settings = self.deps.settings
        try:
            depth = self.deps.router.depth()
            g = GaugeMetricFamily(
                "verisim_queue_messages",
                "job messages by state (every transport of the deployment)",
                labels=["queue", "state"],
            )
            for state in ("visible", "in_flight", "delayed"):
                g.add_metric([settings.sqs_queue_name, state], depth[state])
            yield g
            dead = GaugeMetricFamily(
                "verisim_dead_letter_messages", "messages in the dead-letter queue", labels=["queue"]
            )
            dead.add_metric([settings.sqs_queue_name], depth["dlq"])
            yield dead
        except Exception as exc:
            log.warning("queue depth unavailable: %s", exc)
        rows, stages = self.deps.views.job_figures(QUEUE_BUCKETS_S, STAGE_BUCKETS_S)
        jobs = GaugeMetricFamily("verisim_jobs", "jobs by queue, kind and state", labels=["queue", "kind", "state"])
        for r in rows:
            jobs.add_metric([str(r["queue"]), r["kind"], r["status"]], r["jobs"])
        yield jobs
        labels = ["queue", "kind"]
        summed = _by_queue_and_kind(rows)
        yield _histogram(
            "verisim_job_queue_wait_seconds", "enqueued -> started, per job", labels, summed, "w", QUEUE_BUCKETS_S
        )
        yield _histogram(
            "verisim_job_turnaround_seconds", "enqueued -> finished, per job", labels, summed, "t", QUEUE_BUCKETS_S
        )
        again = CounterMetricFamily(
            "verisim_job_redeliveries", "attempts after each job's first (redeliveries)", labels=labels
        )
        for r in summed:
            again.add_metric([r["queue"], r["kind"]], float(r["again"]))
        yield again
        yield _histogram(
            "verisim_stage_duration_seconds", "job stage durations", ["stage"], stages, "d", STAGE_BUCKETS_S
        )


def registry_with_http() -> tuple[CollectorRegistry, HttpMetrics]:
    """The API's registry with its request metrics; the stores' figures join it once the connections are open
    (``SystemCollector``)."""
    registry = CollectorRegistry()
    return registry, HttpMetrics(registry)
