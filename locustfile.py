"""Locust load for Verisim. Until the system's API lands (issue #4/#8) it exercises the mock OpenAI service.

    locust -f locustfile.py --host http://127.0.0.1:8089 --users 20 --headless -t 30s
"""

from __future__ import annotations

from locust import HttpUser, between, task


class ChatCompletionUser(HttpUser):
    """Chat completions against an OpenAI-compatible endpoint (the mock service by default)."""

    wait_time = between(0.05, 0.2)
    host = "http://127.0.0.1:8089"

    @task
    def chat(self) -> None:
        with self.client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Translate: Ave Maria"}]},
            catch_response=True,
            name="/v1/chat/completions",
        ) as r:
            if r.status_code == 429:
                r.failure(f"rate limited (Retry-After {r.headers.get('retry-after')})")
            elif r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")
