"""Redis from the machine's ``redis-server``: a free port, nothing on disk."""

from __future__ import annotations

from harness.stack import probes
from harness.stack.endpoints import RedisEndpoint
from harness.stack.local.base import LocalService, require_binary
from harness.stack.process import ManagedProcess


class RedisService(LocalService):
    name = "redis"
    ready_timeout = 10.0

    def __init__(self, workdir, port, extra_args: list[str] | None = None):
        super().__init__(workdir, port)
        self.extra_args = extra_args or []

    def spawn(self) -> None:
        binary = require_binary("redis-server", "apt-get install -y redis-server")
        data = self.workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(data), *self.extra_args]
        self.process = ManagedProcess(self.name, argv, self.log_path, stop_grace=3).start()

    def probe(self) -> None:
        probes.redis(self.endpoint())

    def endpoint(self) -> RedisEndpoint:
        return RedisEndpoint("127.0.0.1", self.port)
