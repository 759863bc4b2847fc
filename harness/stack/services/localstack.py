"""LocalStack: the SQS queues (jobs, dead letters) and the S3 artifact store.

Local: LocalStack in host mode, in a cached venv of its own so its pins never bind the project's
(``harness.docker.inputs.LOCALSTACK_PINS``; docs/dependency-pins.md). Container: a testcontainers
``DockerContainer`` on the offline image (the same pins) or ``localstack/localstack:4.13``, ready when our probe (health,
an SQS and an S3 call) answers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from harness.cache import cache_dir
from harness.docker.inputs import MissingInput, ensure_localstack_venv, localstack_python
from harness.stack import probes
from harness.stack.container_runtime import ContainerService
from harness.stack.endpoints import AwsEndpoint
from harness.stack.local_runtime import LocalService
from harness.stack.process import ManagedProcess, ServiceStartError
from harness.stack.service import BackingService

# both runtimes: SQS and S3 only, loaded at start, queue URLs by path, S3 signatures checked, any origin
SETTINGS = {
    "EAGER_SERVICE_LOADING": "1",
    "SQS_ENDPOINT_STRATEGY": "path",
    "S3_SKIP_SIGNATURE_VALIDATION": "0",
    "DISABLE_CORS_CHECKS": "1",
}


# ready in 120 s: a first run on a cold cache builds a service catalog (≈8 s); loaded machines are slower
class LocalStack(BackingService, service="localstack", ready_timeout=120, check=probes.aws):
    def after_ready(self) -> None:
        probes.create_aws_resources(self.endpoint())

    def endpoint(self) -> AwsEndpoint:
        return AwsEndpoint(endpoint_url=f"http://127.0.0.1:{self.port}")


# -- a local process --------------------------------------------------------------------------------------------------
class LocalLocalStack(LocalStack, LocalService):
    # its SIGTERM runs its services' stop hooks, joins its thread pools and rm -rf's its temporary directory — most
    # of a second of a session's teardown, spent on a root the stack deletes
    killed_on_stop = True

    def __init__(self, workdir: Path, port: int, progress: Callable[[str], None] = print):
        super().__init__(workdir, port)
        self.progress = progress

    def prepare(self) -> None:
        try:
            ensure_localstack_venv(self.progress)
        except MissingInput as exc:
            raise ServiceStartError("localstack", str(exc)) from exc

    def spawn(self) -> None:
        root = self.workdir / "localstack"
        # the service catalog cache (≈0.5 GB RSS and +4 s when cold) is shared between sessions
        shared_cache = cache_dir() / "localstack-cache"
        shared_cache.mkdir(parents=True, exist_ok=True)
        (root / "var" / "lib" / "localstack").mkdir(parents=True, exist_ok=True)
        link = root / "var" / "lib" / "localstack" / "cache"
        if not link.exists():
            link.symlink_to(shared_cache)
        # the TLS certificate stays each instance's own: at every start LocalStack rewrites the .crt and .key it
        # splits from server.test.pem, so instances starting together in the shared cache read each other's
        # half-written files ("PEM routines: no start line", seen in CI's three-at-a-time fault step)
        own_pem, shared_pem = root / "server.test.pem", shared_cache / "server.test.pem"
        if shared_pem.exists() and not own_pem.exists():
            shutil.copyfile(shared_pem, own_pem)
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_", "PYTHON", "VIRTUAL_ENV"))
        }
        env.update(
            SETTINGS,
            GATEWAY_LISTEN=f"127.0.0.1:{self.port}",
            LOCALSTACK_HOST=f"127.0.0.1:{self.port}",
            SERVICES="sqs,s3",
            DNS_ADDRESS="0",
            DISABLE_EVENTS="1",
            SKIP_SSL_CERT_DOWNLOAD="1",
            OVERRIDE_IN_DOCKER="0",
            FILESYSTEM_ROOT=str(root),
            LOCALSTACK_TELEMETRY_DISABLED="1",
            CUSTOM_SSL_CERT_PATH=str(own_pem),
        )
        argv = [str(localstack_python()), "-m", "localstack.runtime.main"]
        self.process = ManagedProcess(self.name, argv, self.log_path, env=env, cwd=root, stop_grace=10).start()


# -- a container ------------------------------------------------------------------------------------------------------
IMAGES = ("verisim/localstack:4.13.1", "localstack/localstack:4.13")  # (offline, upstream)


class LocalStackContainer(LocalStack, ContainerService, port_inside=4566, images=IMAGES):
    def make(self):
        from testcontainers.core.container import DockerContainer

        return DockerContainer(self.image).with_envs(
            SERVICES="sqs,s3",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            **SETTINGS,
            LOCALSTACK_HOST=f"127.0.0.1:{self.port}",
        )
