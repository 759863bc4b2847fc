"""The load generator's own figures as Prometheus metrics: what Locust offered and what it saw, from the client's
side of every request (``locustfile.py`` serves them on ``$VERISIM_LOCUST_METRICS_PORT``; the suite has the stack's
Prometheus scrape them next to the system it loads). Names follow Prometheus' conventions under ``verisim_load_``;
latency buckets are the API's, so the two sides of a request read on one scale.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# the API's request buckets (system/api/metrics.py REQUEST_BUCKETS_S), plus the WebSocket's first-event targets
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.35, 0.4, 0.5, 0.7, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0)


class LoadMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["type", "name"]
        self.latency = Histogram(
            "verisim_load_request_duration_seconds",
            "a request's time as its client saw it (Locust), by type (GET, POST, WS) and name",
            labels,
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.requests = Counter(
            "verisim_load_requests",
            "requests Locust made, by type, name and outcome (ok, failed)",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self.users = Gauge("verisim_load_users", "Locust users running", registry=self.registry)

    def request(self, request_type: str, name: str, response_time_ms: float, failed: bool) -> None:
        self.latency.labels(request_type, name).observe(response_time_ms / 1000)
        self.requests.labels(request_type, name, "failed" if failed else "ok").inc()

    def serve(self, port: int, users) -> None:
        """Serve on 127.0.0.1:``port``; ``users()`` is read at each scrape."""
        self.users.set_function(users)
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
