"""Redis: the live status cache.

Persisted the way a production Redis holding live state is: an append-only file, fsynced every second
(``PERSISTENCE``, both runtimes). A restart (stop + start) keeps every status; only a SIGKILL can lose the last
second, and the workers' repair loop rewrites what Redis missed while it was away. Local: Debian's ``redis-server``,
its file in the stack's work directory. Container: a testcontainers ``DockerContainer``, ready when our probe
(PING) answers.
"""

from __future__ import annotations

from pathlib import Path

from harness.stack import probes
from harness.stack.container_runtime import ContainerService
from harness.stack.endpoints import RedisEndpoint
from harness.stack.local_runtime import LocalService, require_binary
from harness.stack.process import ManagedProcess
from harness.stack.service import BackingService

PERSISTENCE = ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]


class Redis(BackingService, service="redis", ready_timeout=10, check=probes.redis):
    def endpoint(self) -> RedisEndpoint:
        return RedisEndpoint("127.0.0.1", self.port)


class LocalRedis(Redis, LocalService):
    def __init__(self, workdir: Path, port: int, extra_args: list[str] | None = None):
        super().__init__(workdir, port)
        self.extra_args = extra_args or []

    def spawn(self) -> None:
        binary = require_binary("redis-server", "apt-get install -y redis-server")
        data = self.workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", *PERSISTENCE]
        argv += ["--daemonize", "no", "--dir", str(data), *self.extra_args]
        self.process = ManagedProcess(self.name, argv, self.log_path, stop_grace=3).start()


IMAGES = ("verisim/redis:7-bookworm", "redis:7")  # (offline, upstream)


class RedisContainer(Redis, ContainerService, port_inside=6379, images=IMAGES):
    def make(self):
        from testcontainers.core.container import DockerContainer

        return DockerContainer(self.image).with_command(["redis-server", *PERSISTENCE, *self.extra_args])
