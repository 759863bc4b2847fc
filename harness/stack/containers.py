"""The containers provider: every backing service as a Testcontainers container, reached on 127.0.0.1.

Same contract as the local provider (``start`` → a :class:`Stack` once each service answers a real round trip;
``stop``; ``leftovers``; ``service(name)`` with halt/start_again/signal for process faults).

Images, per service: ``$VERISIM_IMAGE_<SERVICE>`` when set, else by ``$VERISIM_IMAGES``:
``offline`` — the images ``nox -s images`` builds from Debian packages (no registry); ``upstream`` — the pinned
registry images below (pulled by Docker when missing); ``auto`` (default) — the offline build where it exists,
else the upstream image.

Machines without a registry (docs/docker-without-a-registry.md): no registry, so Ryuk (the reaper image) is disabled and
containers are cleaned up by label instead — at ``stop`` and, for a session that was killed, when the next session
starts; ``/.dockerenv`` exists, so the connection mode is pinned to ``docker_host`` on 127.0.0.1 before testcontainers
is imported (else it would dial the bridge gateway); published ports are bound to 127.0.0.1 on host ports chosen
here, so a restarted container comes back on the same port.
"""

from __future__ import annotations

import os
import shutil
import signal as signals
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.stack import probes
from harness.stack.endpoints import (
    AwsEndpoint,
    KafkaEndpoint,
    OpenAIEndpoint,
    PostgresEndpoint,
    RedisEndpoint,
    Stack,
    assemble,
)
from harness.stack.process import ServiceStartError, free_ports
from harness.stack.provider import SERVICES, StackProvider

# before any `import testcontainers`: its configuration is read at import time
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")

UPSTREAM_IMAGES = {
    "postgres": "postgres:16",
    "redis": "redis:7",
    "kafka": "confluentinc/cp-kafka:7.6.0",
    "localstack": "localstack/localstack:4.13",
    "mock_openai": "verisim/mock-openai:dev",  # built from system/mock_openai/Dockerfile either way
}
OFFLINE_IMAGES = {
    "postgres": "verisim/postgres:15-bookworm",
    "redis": "verisim/redis:7-bookworm",
    "kafka": "verisim/tansu:0.6.0",
    "localstack": "verisim/localstack:4.13.1",
    "mock_openai": "verisim/mock-openai:dev",
}
LABEL = "verisim.stack"  # every container this provider starts carries it
OWNER_LABEL = "verisim.owner"  # "<pid>:<process start ticks>" of the process that started it
PG_USER = PG_PASSWORD = PG_DATABASE = "verisim"


def image_for(service: str) -> str:
    explicit = os.environ.get(f"VERISIM_IMAGE_{service.upper()}")
    if explicit:
        return explicit
    mode = os.environ.get("VERISIM_IMAGES", "auto").lower()
    if mode == "upstream":
        return UPSTREAM_IMAGES[service]
    if mode == "offline" or _image_exists(OFFLINE_IMAGES[service]):
        return OFFLINE_IMAGES[service]
    return UPSTREAM_IMAGES[service]


def _image_exists(image: str) -> bool:
    import subprocess

    r = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=20)
    return r.returncode == 0


def missing_images(services: Iterable[str] = SERVICES) -> list[str]:
    """Images this provider would use that are not on this machine (Docker would have to pull them)."""
    return [img for s in services if not _image_exists(img := image_for(s))]


def _process_start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_tag() -> str:
    return f"{os.getpid()}:{_process_start_ticks(os.getpid())}"


def owner_alive(tag: str) -> bool:
    pid, _, ticks = tag.partition(":")
    return pid.isdigit() and _process_start_ticks(int(pid)) == ticks


def remove_orphans(progress: Callable[[str], None] = print, everything: bool = False) -> list[str]:
    """Remove Verisim containers whose owner process is gone (a killed session): the reaper's job, without Ryuk."""
    import docker

    client = docker.from_env()
    removed = []
    try:
        for c in client.containers.list(all=True, filters={"label": LABEL}):
            owner = c.labels.get(OWNER_LABEL, "")
            if everything or not owner_alive(owner):
                c.remove(force=True, v=True)
                removed.append(c.name)
    finally:
        client.close()
    if removed:
        progress(f"removed {len(removed)} container(s) left by a session that did not stop: {', '.join(removed)}")
    return removed


class ContainerService:
    """One service in a container: start, a real round trip, the endpoint, and the fault operations."""

    name = "service"
    container_port = 0
    ready_timeout = 60.0

    def __init__(
        self,
        workdir: Path,
        port: int,
        session: str,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        self.workdir = workdir
        self.port = port  # on 127.0.0.1
        self.session = session
        self.extra_args = extra_args or []
        self.extra_env = env or {}
        self.image = image_for(self.name)
        self.container = None  # a testcontainers DockerContainer
        self.cancel = threading.Event()

    @property
    def log_path(self) -> Path:
        return self.workdir / "logs" / f"{self.name}.log"

    def make(self):
        raise NotImplementedError

    def create(self):
        c = self.make()
        c.ports = {f"{self.container_port}/tcp": ("127.0.0.1", self.port)}
        for k, v in self.extra_env.items():
            c.with_env(k, v)
        c._name = f"verisim-{self.session}-{self.name}"
        return c.with_kwargs(labels={LABEL: self.session, OWNER_LABEL: owner_tag(), "verisim.service": self.name})

    def start(self) -> float:
        """Create and start the container (testcontainers' own wait), then wait for our round trip."""
        started = time.monotonic()
        self.container = self.create()
        try:
            self.container.start()
        except Exception as exc:
            self.save_logs()
            raise ServiceStartError(
                self.name, f"the container did not start: {exc}", self.log_path, self.log_tail()
            ) from exc
        self.wait_ready(started)
        try:
            self.after_ready()
        except Exception as exc:
            raise ServiceStartError(
                self.name, f"ready, but setting up failed: {exc!r}", self.log_path, self.log_tail()
            ) from exc
        return time.monotonic() - started

    def wait_ready(self, started: float | None = None) -> float:
        started = started or time.monotonic()
        last: Exception | None = None
        while time.monotonic() - started < self.ready_timeout:
            if self.cancel.is_set():
                raise ServiceStartError(self.name, "abandoned: another service failed to start")
            wrapped = self.container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                self.save_logs()
                raise ServiceStartError(
                    self.name,
                    f"the container exited ({wrapped.attrs['State'].get('ExitCode')})",
                    self.log_path,
                    self.log_tail(),
                )
            try:
                self.probe()
                return time.monotonic() - started
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last = exc
                time.sleep(0.1)
        self.save_logs()
        raise ServiceStartError(
            self.name, f"no answer within {self.ready_timeout:.0f}s (last: {last!r})", self.log_path, self.log_tail()
        )

    def probe(self) -> None:
        raise NotImplementedError

    def after_ready(self) -> None:
        pass

    def endpoint(self):
        raise NotImplementedError

    # -- logs ------------------------------------------------------------------------------------------------------
    def save_logs(self) -> None:
        if self.container is None or self.container._container is None:
            return
        try:
            out = self.container.get_wrapped_container().logs()
        except Exception:  # noqa: BLE001 - already gone
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(out)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- faults: Docker's kill/pause/stop/start on the same container and host port ------------------------------
    def halt(self) -> None:
        self.container.get_wrapped_container().stop(timeout=10)

    def start_again(self) -> float:
        self.cancel.clear()
        started = time.monotonic()
        self.container.get_wrapped_container().start()
        seconds = self.wait_ready(started)
        self.after_restart()
        return seconds

    def after_restart(self) -> None:
        """What a fresh start must redo (memory-only state is gone): nothing by default."""

    def signal(self, sig: int) -> None:
        wrapped = self.container.get_wrapped_container()
        if sig == signals.SIGSTOP:
            wrapped.pause()
        elif sig == signals.SIGCONT:
            wrapped.unpause()
        else:
            wrapped.kill(signal=sig)

    def stop(self) -> None:
        if self.container is None or self.container._container is None:
            return
        self.save_logs()
        try:
            wrapped = self.container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status == "paused":
                wrapped.unpause()
            wrapped.remove(force=True, v=True)
        except Exception as exc:  # noqa: BLE001 - already removed is fine
            if "No such container" not in str(exc) and "404" not in str(exc):
                raise

    def leftovers(self) -> list[str]:
        if self.container is None or self.container._container is None:
            return []
        import docker.errors

        try:
            self.container.get_wrapped_container().reload()
        except docker.errors.NotFound:
            return []
        return [self.container.get_wrapped_container().short_id]


class PostgresContainerService(ContainerService):
    name = "postgres"
    container_port = 5432

    def make(self):
        from testcontainers.community.postgres import PostgresContainer

        # fsync off (only an OS crash loses data) but synchronous_commit ON: with it off a killed postmaster
        # loses commits it already acknowledged — the postgres_kill chaos test caught exactly that
        command = [
            "postgres",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
            *self.extra_args,
        ]
        c = (
            PostgresContainer(self.image, username=PG_USER, password=PG_PASSWORD, dbname=PG_DATABASE, driver=None)
            .with_env("POSTGRES_INITDB_ARGS", "--no-sync")
            .with_command(command)
        )
        c._connect = lambda: None  # its psql poll never notices an exited container; our probe (SELECT 1) does
        return c

    def probe(self) -> None:
        probes.postgres(self.endpoint())

    def endpoint(self) -> PostgresEndpoint:
        return PostgresEndpoint("127.0.0.1", self.port, PG_USER, PG_PASSWORD, PG_DATABASE)


class RedisContainerService(ContainerService):
    name = "redis"
    container_port = 6379

    def make(self):
        from testcontainers.community.redis import RedisContainer

        from harness.stack.local.redis import REDIS_PERSISTENCE

        c = RedisContainer(self.image).with_command(["redis-server", *REDIS_PERSISTENCE, *self.extra_args])
        c._wait_strategy = None  # its PING poll never notices an exited container; our probe (PING) does
        return c

    def probe(self) -> None:
        probes.redis(self.endpoint())

    def endpoint(self) -> RedisEndpoint:
        return RedisEndpoint("127.0.0.1", self.port)


class KafkaContainerService(ContainerService):
    name = "kafka"
    container_port = 9093  # KafkaContainer's client-facing listener

    def make(self):
        from testcontainers.community.kafka import KafkaContainer

        return KafkaContainer(self.image, port=self.container_port)

    def probe(self) -> None:
        probes.kafka(self.endpoint())

    def endpoint(self) -> KafkaEndpoint:
        return KafkaEndpoint(f"127.0.0.1:{self.port}")


class LocalStackContainerService(ContainerService):
    name = "localstack"
    container_port = 4566
    ready_timeout = 120.0

    def make(self):
        from testcontainers.community.localstack import LocalStackContainer
        from testcontainers.core.container import DockerContainer

        c = (
            LocalStackContainer(self.image, region_name="us-east-1")
            .with_services("sqs", "s3")
            .with_env("EAGER_SERVICE_LOADING", "1")
            .with_env("SQS_ENDPOINT_STRATEGY", "path")
            .with_env("S3_SKIP_SIGNATURE_VALIDATION", "0")
            .with_env("DISABLE_CORS_CHECKS", "1")
            .with_env("LOCALSTACK_HOST", f"127.0.0.1:{self.port}")
        )
        # its wait for "Ready." never notices an exited container; our probe (health + SQS and S3 calls) does
        c.start = lambda: DockerContainer.start(c)
        return c

    def probe(self) -> None:
        probes.aws(self.endpoint())

    def after_ready(self) -> None:
        probes.create_aws_resources(self.endpoint())

    def endpoint(self) -> AwsEndpoint:
        return AwsEndpoint(endpoint_url=f"http://127.0.0.1:{self.port}")


class MockOpenAIContainerService(ContainerService):
    name = "mock_openai"
    container_port = 8089

    def make(self):
        from testcontainers.core.container import DockerContainer

        return DockerContainer(self.image).with_exposed_ports(self.container_port)

    def probe(self) -> None:
        probes.openai(self.endpoint())

    def endpoint(self) -> OpenAIEndpoint:
        base = f"http://127.0.0.1:{self.port}"
        return OpenAIEndpoint(base_url=f"{base}/v1", admin_url=f"{base}/admin")


SERVICE_CLASSES: dict[str, type[ContainerService]] = {
    c.name: c
    for c in (
        PostgresContainerService,
        RedisContainerService,
        KafkaContainerService,
        LocalStackContainerService,
        MockOpenAIContainerService,
    )
}


class ContainersProvider(StackProvider):
    name = "containers"

    def __init__(
        self,
        workdir: Path | None = None,
        progress: Callable[[str], None] = print,
        overrides: dict[str, dict] | None = None,
    ):
        self._own_workdir = workdir is None  # a temporary one (saved container logs) goes with stop()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="verisim-containers-"))
        self.progress = progress
        self.overrides = overrides or {}
        self.session = uuid.uuid4().hex[:8]
        self.services: dict[str, ContainerService] = {}
        self._lock = threading.Lock()

    def start(self, services: Iterable[str] = SERVICES) -> Stack:
        names = list(dict.fromkeys(services))
        unknown = [n for n in names if n not in SERVICE_CLASSES]
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; known: {', '.join(SERVICES)}")
        started = time.monotonic()
        remove_orphans(self.progress)
        ports = free_ports(len(names))
        for name, port in zip(names, ports, strict=True):
            self.services[name] = SERVICE_CLASSES[name](
                self.workdir, port, self.session, **self.overrides.get(name, {})
            )
        ready: dict[str, float] = {}
        errors: list[BaseException] = []
        try:
            # containers start in parallel; when one fails the others stop waiting
            with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="container") as pool:
                futures = {n: pool.submit(self.services[n].start) for n in names}
                for name, fut in futures.items():
                    try:
                        ready[name] = fut.result()
                    except BaseException as exc:  # noqa: BLE001 - collected, first real one raised
                        errors.append(exc)
                        for svc in self.services.values():
                            svc.cancel.set()
            if errors:
                real = [e for e in errors if not (isinstance(e, ServiceStartError) and "abandoned" in e.reason)]
                raise (real or errors)[0]
        except BaseException:
            self.stop()
            raise
        for name, seconds in ready.items():
            self.progress(f"  {name:<12} ready in {seconds:5.2f}s ({self.services[name].image})")
        self.progress(f"stack ready in {time.monotonic() - started:.2f}s (containers verisim-{self.session}-*)")
        return assemble(self.name, self.services, ready)

    def stop(self) -> None:
        with self._lock:
            services = list(self.services.values())
            if services:
                with ThreadPoolExecutor(max_workers=len(services)) as pool:
                    list(pool.map(lambda s: s.stop(), services))
            if self._own_workdir and not self.leftovers():
                shutil.rmtree(self.workdir, ignore_errors=True)

    def service(self, name: str) -> ContainerService:
        if name not in self.services:
            raise KeyError(f"{name!r} is not running in this stack; running: {', '.join(self.services)}")
        return self.services[name]

    def leftovers(self) -> dict[str, list]:
        return {n: ids for n, s in self.services.items() if (ids := s.leftovers())}
