"""LocalStack (SQS + S3) on the host, in its own cached venv so its pins never bind the project's.

Pins (docs/dependency-pins.md): 4.13.1 is the newest release that imports on Python 3.11, and
its dependencies drifted (cbor2 6, pyOpenSSL 25+, missing service-identity).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.cache import cache_dir, cache_lock
from harness.stack import probes
from harness.stack.endpoints import AwsEndpoint
from harness.stack.local.base import LocalService
from harness.stack.process import ManagedProcess, ServiceStartError

LOCALSTACK_VERSION = "4.13.1"
LOCALSTACK_PINS = [
    f"localstack-core[runtime]=={LOCALSTACK_VERSION}",
    "cbor2<6",
    "pyopenssl<25",
    "cryptography<45",
    "service-identity",
]


def venv_dir() -> Path:
    return cache_dir() / f"localstack-{LOCALSTACK_VERSION}"


def venv_python() -> Path:
    return venv_dir() / "bin" / "python"


def ensure_venv(progress=print) -> Path:
    """Create the LocalStack venv once (≈1–2 min, ≈0.5 GB); later runs reuse it."""
    marker = venv_dir() / ".verisim-pins"
    want = "\n".join(LOCALSTACK_PINS)
    with cache_lock("localstack-venv"):
        if marker.exists() and marker.read_text() == want and venv_python().exists():
            return venv_python()
        progress(f"building the LocalStack venv in {venv_dir()} (once; about 1–2 minutes)")
        shutil.rmtree(venv_dir(), ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(venv_dir())], check=True)
        r = subprocess.run(
            [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q", *LOCALSTACK_PINS],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise ServiceStartError("localstack", f"pip could not build its venv:\n{r.stderr[-3000:]}")
        marker.write_text(want)
        progress(f"LocalStack venv ready in {time.monotonic() - started:.0f}s")
    return venv_python()


class LocalStackService(LocalService):
    name = "localstack"
    ready_timeout = 120.0  # first run on a cold cache builds a service catalog (≈8 s); loaded machines are slower

    def __init__(self, workdir, port, progress=print):
        super().__init__(workdir, port)
        self.progress = progress

    def prepare(self) -> None:
        ensure_venv(self.progress)

    def spawn(self) -> None:
        root = self.workdir / "localstack"
        # the service catalog cache (≈0.5 GB RSS and +4 s when cold) is shared between sessions
        shared_cache = cache_dir() / "localstack-cache"
        shared_cache.mkdir(parents=True, exist_ok=True)
        (root / "var" / "lib" / "localstack").mkdir(parents=True, exist_ok=True)
        link = root / "var" / "lib" / "localstack" / "cache"
        if not link.exists():
            link.symlink_to(shared_cache)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_", "PYTHON", "VIRTUAL_ENV"))
        }
        env.update(
            GATEWAY_LISTEN=f"127.0.0.1:{self.port}",
            LOCALSTACK_HOST=f"127.0.0.1:{self.port}",
            SERVICES="sqs,s3",
            EAGER_SERVICE_LOADING="1",
            DNS_ADDRESS="0",
            DISABLE_EVENTS="1",
            SKIP_SSL_CERT_DOWNLOAD="1",
            OVERRIDE_IN_DOCKER="0",
            FILESYSTEM_ROOT=str(root),
            SQS_ENDPOINT_STRATEGY="path",
            S3_SKIP_SIGNATURE_VALIDATION="0",
            LOCALSTACK_TELEMETRY_DISABLED="1",
            DISABLE_CORS_CHECKS="1",
        )
        argv = [str(venv_python()), "-m", "localstack.runtime.main"]
        self.process = ManagedProcess(self.name, argv, self.log_path, env=env, cwd=root, stop_grace=10).start()

    def endpoint(self) -> AwsEndpoint:
        return AwsEndpoint(endpoint_url=f"http://127.0.0.1:{self.port}")

    def probe(self) -> None:
        probes.aws(self.endpoint())

    def after_ready(self) -> None:
        probes.create_aws_resources(self.endpoint())
