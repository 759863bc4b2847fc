"""The mock OpenAI-compatible service (``system.mock_openai``) as its own process."""

from __future__ import annotations

import os
import sys

from harness.stack import probes
from harness.stack.endpoints import OpenAIEndpoint
from harness.stack.local.base import LocalService
from harness.stack.process import ManagedProcess


class MockOpenAIService(LocalService):
    name = "mock_openai"
    ready_timeout = 30.0

    def __init__(self, workdir, port, env: dict[str, str] | None = None):
        super().__init__(workdir, port)
        self.extra_env = env or {}

    def spawn(self) -> None:
        env = {**os.environ, **self.extra_env}
        argv = [sys.executable, "-m", "system.mock_openai", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = ManagedProcess(self.name, argv, self.log_path, env=env, stop_grace=5).start()

    def probe(self) -> None:
        probes.openai(self.endpoint())

    def endpoint(self) -> OpenAIEndpoint:
        base = f"http://127.0.0.1:{self.port}"
        return OpenAIEndpoint(base_url=f"{base}/v1", admin_url=f"{base}/admin")
