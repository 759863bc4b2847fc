"""Redis from the machine's ``redis-server``: a free port, its append-only file in the stack's work directory.

The status cache is persisted the way a production Redis holding live state is: an append-only file, fsynced every
second (``REDIS_PERSISTENCE``, used by the container recipe too). A restart (stop + start) keeps every status; only a
SIGKILL can lose the last second, and the workers' repair loop rewrites what Redis missed while it was away.
"""

from __future__ import annotations

from harness.stack import probes
from harness.stack.endpoints import RedisEndpoint
from harness.stack.local.base import LocalService, require_binary
from harness.stack.process import ManagedProcess

REDIS_PERSISTENCE = ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]


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
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            *REDIS_PERSISTENCE,
            "--daemonize",
            "no",
            "--dir",
            str(data),
            *self.extra_args,
        ]
        self.process = ManagedProcess(self.name, argv, self.log_path, stop_grace=3).start()

    def probe(self) -> None:
        probes.redis(self.endpoint())

    def endpoint(self) -> RedisEndpoint:
        return RedisEndpoint("127.0.0.1", self.port)
