"""Prometheus: scrapes the system the suite runs and evaluates slo.toml's alert rules over what it scraped.

Its configuration lives in the stack's work directory (``prometheus/``): ``prometheus.yml`` (scrape and evaluate every
two seconds), ``targets/*.json`` (file-based discovery: a system the suite starts writes its API and workers there,
removed when it stops; Prometheus rereads the folder within a second) and ``rules/*.yml`` (the deployable rules from
``deploy/prometheus/``, and the suite's own run rules, ``harness.oracles.two_judges``; reloaded through ``/-/reload``).
Local: Debian's ``prometheus`` (``python3 dev.py setup`` installs it). Container: ``verisim/prometheus`` (Debian's
package in an image; ``nox -s images``) on the host's network — what it scrapes listens on the host's loopback — with
the configuration folder mounted at the same path, its database inside the container.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from harness.stack import probes
from harness.stack.container_runtime import ContainerService
from harness.stack.endpoints import PrometheusEndpoint
from harness.stack.local_runtime import LocalService, require_binary
from harness.stack.process import ManagedProcess
from harness.stack.service import BackingService

ROOT = Path(__file__).resolve().parents[3]
DEPLOYED_RULES = ROOT / "deploy" / "prometheus" / "verisim-rules.yml"
SCRAPE_INTERVAL = "2s"  # a bounded run of a minute is read from ~30 scrapes; rules are evaluated as often


def config() -> dict:
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "rule_files": ["rules/*.yml"],
        "scrape_configs": [
            {"job_name": "verisim", "file_sd_configs": [{"files": ["targets/*.json"], "refresh_interval": "1s"}]}
        ],
    }


class Prometheus(BackingService, service="prometheus", ready_timeout=20, check=probes.prometheus):
    @property
    def config_dir(self) -> Path:
        return self.workdir / "prometheus"

    def endpoint(self) -> PrometheusEndpoint:
        return PrometheusEndpoint(f"http://127.0.0.1:{self.port}", str(self.config_dir))

    def write_config(self) -> None:
        for sub in ("targets", "rules"):
            (self.config_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.config_dir / "prometheus.yml").write_text(yaml.safe_dump(config(), sort_keys=False))
        shutil.copyfile(DEPLOYED_RULES, self.config_dir / "rules" / DEPLOYED_RULES.name)

    def prepare(self) -> None:
        self.write_config()

    def args(self, data: str) -> list[str]:
        return [
            f"--config.file={self.config_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]


class LocalPrometheus(Prometheus, LocalService):
    def spawn(self) -> None:
        binary = require_binary("prometheus", "apt-get install -y prometheus (python3 dev.py setup does it)")
        argv = [binary, *self.args(str(self.config_dir / "data"))]
        self.process = ManagedProcess(self.name, argv, self.log_path, cwd=self.config_dir, stop_grace=5).start()


IMAGES = ("verisim/prometheus:bookworm",) * 2  # (offline, upstream): Debian's package, built here


class PrometheusContainer(Prometheus, ContainerService, port_inside=9090, images=IMAGES):
    def make(self):
        from testcontainers.core.container import DockerContainer

        folder = str(self.config_dir)
        return (
            DockerContainer(self.image).with_command(self.args("/prometheus")).with_volume_mapping(folder, folder, "rw")
        )

    def _create(self):
        c = super()._create()
        c.ports = {}  # the host's network: no published port, it listens on the host's 127.0.0.1:port itself
        c._kwargs = {**c._kwargs, "network_mode": "host"}
        return c
