"""What every backing service is to a provider and to the fault injectors, whichever runtime runs it.

A service module (``harness.stack.services.<name>``) says what the service is — its probe (one real round trip), its
endpoint, what must exist once it answers — once; a runtime (``local_runtime.LocalService``: a plain process,
``container_runtime.ContainerService``: a Testcontainers container) says how it runs. Each concrete class is the two
together, e.g. ``class LocalPostgres(Postgres, LocalService)``.

A provider starts services in three phases: ``prepare`` (cached slow work, in parallel threads), ``spawn`` (on the
main thread, quick), ``wait_ready`` (in parallel, bounded by ``ready_timeout``; stops early when ``cancel`` is set
because a sibling failed). The fault injectors use ``halt``/``start_again`` (same port, data kept), ``signal``
(SIGSTOP/SIGCONT pause, SIGKILL kill) and ``leftovers``.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.stack.endpoints import Endpoint


class BackingService(abc.ABC):
    """A service module declares its class in one line, ``class Redis(BackingService, service="redis",
    ready_timeout=10, check=probes.redis)``, and gives it an ``endpoint``."""

    name: str = "service"
    ready_timeout: float = 30.0
    check: Callable[[Any], None]  # one real round trip against the endpoint (harness.stack.probes)

    def __init_subclass__(
        cls,
        *,
        service: str | None = None,
        ready_timeout: float | None = None,
        check: Callable[[Any], None] | None = None,
        **kwargs,
    ):
        super().__init_subclass__(**kwargs)
        if service is not None:
            cls.name = service
        if ready_timeout is not None:
            cls.ready_timeout = ready_timeout
        if check is not None:
            cls.check = staticmethod(check)

    def __init__(self, workdir: Path, port: int):
        self.workdir = workdir
        self.port = port  # on 127.0.0.1
        self.cancel = threading.Event()  # set by the provider when a sibling failed: stop waiting

    @property
    def log_path(self) -> Path:
        return self.workdir / "logs" / f"{self.name}.log"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- what the service is (its module) ---------------------------------------------------------------------------
    def probe(self) -> None:
        """One real round trip; raises until the service answers."""
        type(self).check(self.endpoint())

    @abc.abstractmethod
    def endpoint(self) -> Endpoint:
        """Where and how clients reach it."""

    def after_ready(self) -> None:
        """Create what the stack promises to exist (buckets, queues): nothing by default."""
        return None

    def after_restart(self) -> None:
        """What a fresh start must redo (memory-only state is gone): nothing by default."""
        return None

    def ready_note(self, prepared_s: float) -> str:
        """A few words after "ready in …" in the start-up progress."""
        return ""

    # -- how it runs (its runtime) ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Slow, cacheable work (templates, venvs); safe off the main thread."""
        return None

    @abc.abstractmethod
    def spawn(self) -> None:
        """Start it (main thread); quick."""

    @abc.abstractmethod
    def wait_ready(self) -> float:
        """Wait for ``probe`` to pass, then ``after_ready``; returns the seconds it took, or raises ServiceStartError."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop it and remove what it left. Idempotent."""

    @abc.abstractmethod
    def halt(self) -> None:
        """Stop it but keep what a restart needs (data, port)."""

    @abc.abstractmethod
    def start_again(self) -> float:
        """Start it again on the same port and wait for a real round trip; returns the seconds it took."""

    @abc.abstractmethod
    def exited(self) -> bool:
        """It was started and has exited since, unasked (a crash, or a server that shut itself down)."""

    @abc.abstractmethod
    def signal(self, sig: int) -> None:
        """Send ``sig`` to all of it: SIGSTOP/SIGCONT pause and resume it, SIGKILL kills it."""

    @abc.abstractmethod
    def leftovers(self) -> list:
        """What of it is still alive (after ``stop`` this must be empty): pids or container ids."""

    def pids(self) -> list[int]:
        """Its processes on this host, for CPU accounting: none by default (a container's are not ours to read)."""
        return []
