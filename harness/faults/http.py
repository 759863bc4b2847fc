"""HTTP faults, out of process, through the mock OpenAI service's knobs: one method per fault, each on the timeline.

with faults.rate_limit(retry_after=2, count=4): ...      # the next 4 calls answer 429 + Retry-After: 2
with faults.error_rate(0.5, status=503): ...
with faults.delay(3.0): ...                              # past the client's timeout: a timeout
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from harness.faults.mock_openai import MockOpenAIControl
from harness.faults.timeline import FaultTimeline


class HttpFaults:
    def __init__(self, control: MockOpenAIControl, timeline: FaultTimeline):
        self.control = control
        self.timeline = timeline

    @contextlib.contextmanager
    def _knobs(self, name: str, **knobs) -> Iterator[None]:
        before = self.control.config()
        with self.timeline.window(name, "http", **knobs):
            self.control.configure(**knobs)
            try:
                yield
            finally:
                self.control.configure(**{k: before[k] for k in knobs})

    def delay(self, seconds: float):
        return self._knobs("delay", delay_seconds=seconds)

    def error_rate(self, rate: float, status: int = 500):
        return self._knobs("error_rate", error_rate=rate, error_status=status)

    def malformed_json(self, rate: float = 1.0):
        return self._knobs("malformed_json", malformed_rate=rate)

    def connection_drop(self, rate: float = 1.0):
        """Answers start, then the connection drops mid-body (the SDK sees a connection error and retries)."""
        return self._knobs("connection_drop", drop_rate=rate)

    def rate_limit_rpm(self, rpm: int, retry_after: float | None = None):
        return self._knobs("rate_limit", rate_limit_rpm=rpm, retry_after_seconds=retry_after)

    @contextlib.contextmanager
    def rate_limit(self, retry_after: float, count: int) -> Iterator[None]:
        """The next ``count`` chat calls answer 429 with ``Retry-After: retry_after``."""
        with self.timeline.window("rate_limit", "http", retry_after=retry_after, count=count):
            self.control.script(*[{"status": 429, "retry_after": retry_after}] * count)
            yield
