"""Drive the out-of-process mock OpenAI service: set knobs, script responses, read what it saw."""

from __future__ import annotations

from typing import Any

from harness.drivers import http
from harness.stack.endpoints import OpenAIEndpoint


class MockOpenAIControl:
    def __init__(self, endpoint: OpenAIEndpoint, timeout: float = 10.0):
        self.endpoint = endpoint
        self._http = http.client(base_url=endpoint.admin_url, timeout=timeout)  # one shared TLS context

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at run time, e.g. ``configure(delay_seconds=0.5, error_rate=0.2)``."""
        r = self._http.patch("/config", json=knobs)
        r.raise_for_status()
        return r.json()

    def config(self) -> dict[str, Any]:
        return self._http.get("/config").raise_for_status().json()

    def script(self, *responses: dict[str, Any]) -> int:
        """Answer the next chat requests in order, e.g. ``script({"status": 429, "retry_after": 0})``."""
        r = self._http.post("/script", json={"responses": list(responses)})
        r.raise_for_status()
        return r.json()["queued"]

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """Every chat request the mock answered (seq, status, retry_count, delay, …), oldest first."""
        return self._http.get("/requests", params={"since": since}).raise_for_status().json()["requests"]

    def reset(self) -> None:
        """Knobs back to their start-up values, history cleared, generator re-seeded."""
        self._http.post("/reset").raise_for_status()

    def close(self) -> None:
        self._http.close()
