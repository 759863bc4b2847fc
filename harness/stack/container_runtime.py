"""The containers runtime: a backing service as a Testcontainers container, published on 127.0.0.1.

Images, per service: ``$VERISIM_IMAGE_<SERVICE>`` when set, else by ``$VERISIM_IMAGES``: ``offline`` — the images
``nox -s images`` builds from Debian packages (no registry); ``upstream`` — the service's pinned registry image
(pulled by Docker when missing); ``auto`` (default) — the offline build where it exists, else the upstream image.

Machines without a registry (docs/docker-without-a-registry.md): Ryuk (the reaper image) is disabled and containers
are cleaned up by label instead — at ``stop`` and, for a session that was killed, when the next session starts
(``remove_orphans``); ``/.dockerenv`` exists there, so the connection mode is pinned to ``docker_host`` on 127.0.0.1
before testcontainers is imported (else it would dial the bridge gateway); published ports are bound to 127.0.0.1 on
host ports chosen up front, so a restarted container comes back on the same port.
"""

from __future__ import annotations

import os
import signal as signals
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from harness.settings import current
from harness.stack.process import ServiceStartError
from harness.stack.service import BackingService

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

# before any `import testcontainers`: its configuration is read at import time
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")

LABEL = "verisim.stack"  # every container Verisim starts carries it
OWNER_LABEL = "verisim.owner"  # "<pid>:<process start time>" of the process that started it


def image_for(service: str, offline: str, upstream: str) -> str:
    settings = current()
    explicit = settings.image_override(service)
    if explicit:
        return explicit
    mode = settings.images.lower()
    if mode == "upstream":
        return upstream
    if mode == "offline" or image_exists(offline):
        return offline
    return upstream


def image_exists(image: str) -> bool:
    r = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=20)
    return r.returncode == 0


# -- cleanup without Ryuk: each container names the process that owns it --------------------------------------------
def _started_at(pid: int) -> str | None:
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None


def owner_tag() -> str:
    return f"{os.getpid()}:{_started_at(os.getpid())}"


def owner_alive(tag: str) -> bool:
    """The process named by ``tag`` still runs (the same process: a reused pid has another start time)."""
    pid, _, started = tag.partition(":")
    return pid.isdigit() and _started_at(int(pid)) == started


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


class ContainerService(BackingService):
    """Subclasses say which container (``make``), on which port inside it, from which images."""

    container_port = 0
    ready_timeout = 60.0
    offline_image = ""
    upstream_image = ""

    def __init_subclass__(cls, *, port_inside: int | None = None, images: tuple[str, str] | None = None, **kwargs):
        """``port_inside``: the port the service listens on in the container; ``images``: (offline, upstream)."""
        super().__init_subclass__(**kwargs)
        if port_inside is not None:
            cls.container_port = port_inside
        if images is not None:
            cls.offline_image, cls.upstream_image = images
        # creating and starting a container comes before the first answer: never less than a minute
        cls.ready_timeout = max(cls.ready_timeout, 60.0)

    def __init__(
        self,
        workdir: Path,
        port: int,
        session: str,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        instance: str = "",
    ):
        """``instance``: a suffix for the container's name, for one more of the service beside the stack's."""
        super().__init__(workdir, port)
        self.session = session
        self.instance = instance
        self.extra_args = extra_args or []
        self.extra_env = env or {}
        self.image = self.chosen_image()
        self.container: DockerContainer | None = None

    @classmethod
    def chosen_image(cls) -> str:
        return image_for(cls.name, cls.offline_image, cls.upstream_image)

    def ready_note(self, prepared_s: float) -> str:
        return f" ({self.image})"

    def make(self) -> DockerContainer:
        raise NotImplementedError

    # testcontainers runs our probe as the container's wait strategy (``waiting_for``) — unless the container class
    # has a start sequence of its own that the service needs (Kafka's start script), which then waits first
    probe_in_start = True

    def _create(self) -> DockerContainer:
        c = self.make()
        # published on loopback only, at the port chosen up front: docker-py takes (ip, port), which
        # ``with_bind_ports`` (a port, or "port/proto") cannot say; ``ports`` is the attribute it writes
        c.ports = {f"{self.container_port}/tcp": ("127.0.0.1", self.port)}  # type: ignore[dict-item]
        c.with_envs(**self.extra_env).with_name(f"verisim-{self.session}-{self.name}{self.instance}")
        if self.probe_in_start:
            c.waiting_for(probe_wait(self))
        return c.with_kwargs(labels={LABEL: self.session, OWNER_LABEL: owner_tag(), "verisim.service": self.name})

    def _running(self) -> bool:
        """A container was created (testcontainers raises on asking an unstarted one for it)."""
        return self.container is not None and getattr(self.container, "_container", None) is not None

    def _wrapped(self):
        assert self.container is not None, "not started"
        return self.container.get_wrapped_container()

    def spawn(self) -> None:
        """Nothing on the main thread: the container is created and started in ``wait_ready``, in parallel."""

    def wait_ready(self) -> float:
        """Create and start the container; testcontainers waits for our round trip (``probe_wait``)."""
        started = self._started = time.monotonic()
        self.container = self._create()
        try:
            self.container.start()
        except ServiceStartError:
            raise
        except Exception as exc:
            self.save_logs()
            raise ServiceStartError(
                self.name, f"the container did not start: {exc}", self.log_path, self.log_tail()
            ) from exc
        self._await_probe(started)
        try:
            self.after_ready()
        except Exception as exc:
            raise ServiceStartError(
                self.name, f"ready, but setting up failed: {exc!r}", self.log_path, self.log_tail()
            ) from exc
        return time.monotonic() - started

    _started = 0.0

    def _await_probe(self, started: float) -> float:
        """Our probe's round trip, polled until it answers; fails fast when the container exits."""
        last: Exception | None = None
        while time.monotonic() - started < self.ready_timeout:
            if self.cancel.is_set():
                raise ServiceStartError(self.name, "abandoned: another service failed to start")
            wrapped = self._wrapped()
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

    def save_logs(self) -> None:
        if not self._running():
            return
        try:
            out = self._wrapped().logs()
        except Exception:  # noqa: BLE001 - already gone
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(out)

    # -- faults: Docker's kill/pause/stop/start on the same container and host port ------------------------------
    def halt(self) -> None:
        self._wrapped().stop(timeout=10)

    def start_again(self) -> float:
        self.cancel.clear()
        started = time.monotonic()
        self._wrapped().start()
        seconds = self._await_probe(started)
        self.after_restart()
        return seconds

    def exited(self) -> bool:
        if not self._running():
            return False
        wrapped = self._wrapped()
        wrapped.reload()
        return wrapped.status in ("exited", "dead")

    def signal(self, sig: int) -> None:
        wrapped = self._wrapped()
        if sig == signals.SIGSTOP:
            wrapped.pause()
        elif sig == signals.SIGCONT:
            wrapped.unpause()
        else:
            wrapped.kill(signal=sig)

    def stop(self) -> None:
        if not self._running():
            return
        self.save_logs()
        try:
            wrapped = self._wrapped()
            wrapped.reload()
            if wrapped.status == "paused":
                wrapped.unpause()
            wrapped.remove(force=True, v=True)
        except Exception as exc:  # noqa: BLE001 - already removed is fine
            if "No such container" not in str(exc) and "404" not in str(exc):
                raise

    def leftovers(self) -> list[str]:
        if not self._running():
            return []
        import docker.errors

        try:
            self._wrapped().reload()
        except docker.errors.NotFound:
            return []
        return [self._wrapped().short_id]


def probe_wait(service: ContainerService):
    """Testcontainers' wait strategy for ``service``: our probe (``BackingService.probe``) until it answers, within
    the service's ready timeout, failing fast when the container exits — which the images' own waits (a psql or
    PING poll, a log line) never notice."""
    from testcontainers.core.waiting_utils import WaitStrategy

    class ProbeWait(WaitStrategy):
        def wait_until_ready(self, container) -> None:
            service._await_probe(service._started)

    return ProbeWait()
