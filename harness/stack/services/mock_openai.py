"""The mock OpenAI-compatible service (``system.mock_openai``): chat completions with fault knobs.

Local: ``python -m system.mock_openai`` as its own process. Container: the image built from
``system/mock_openai/Dockerfile`` (the same either way: there is no registry image of it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from harness.stack import probes
from harness.stack.container_runtime import ContainerService
from harness.stack.endpoints import OpenAIEndpoint
from harness.stack.local_runtime import LocalService
from harness.stack.process import ManagedProcess
from harness.stack.service import BackingService


class MockOpenAI(BackingService, service="mock_openai", check=probes.openai):
    def endpoint(self) -> OpenAIEndpoint:
        base = f"http://127.0.0.1:{self.port}"
        return OpenAIEndpoint(base_url=f"{base}/v1", admin_url=f"{base}/admin")


class LocalMockOpenAI(MockOpenAI, LocalService):
    def __init__(self, workdir: Path, port: int, env: dict[str, str] | None = None):
        super().__init__(workdir, port)
        self.extra_env = env or {}

    def spawn(self) -> None:
        env = {**os.environ, **self.extra_env}
        argv = [sys.executable, "-m", "system.mock_openai", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = ManagedProcess(self.name, argv, self.log_path, env=env, stop_grace=5).start()


IMAGES = ("verisim/mock-openai:dev",) * 2  # (offline, upstream)


class MockOpenAIContainer(MockOpenAI, ContainerService, port_inside=8089, images=IMAGES):
    def make(self):
        from testcontainers.core.container import DockerContainer

        return DockerContainer(self.image).with_exposed_ports(self.container_port)
