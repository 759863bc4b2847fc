"""What a provider is: it starts the backing services of one runtime in parallel and stops them, leaving nothing.

``StackProvider`` holds what both runtimes share — the three start phases (``prepare`` in parallel, ``spawn`` on the
main thread, ``wait_ready`` in parallel), cancelling the siblings of a service that failed and raising the first real
failure, stopping in parallel, ``leftovers`` — so ``LocalProvider`` and ``ContainersProvider``
(``harness.stack.providers``) only say how to build a service. ``harness.stack.choice`` picks one.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from harness.stack.endpoints import Stack, assemble
from harness.stack.process import ServiceStartError, free_ports
from harness.stack.service import BackingService

SERVICES = ("postgres", "redis", "kafka", "localstack", "mock_openai", "prometheus")


class StackUnavailable(RuntimeError):
    """The requested provider cannot run here; the message says what to do."""


def _timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        t0 = time.monotonic()
        fn()
        return time.monotonic() - t0

    return run


class StackProvider:
    name: str = "provider"
    workdir_prefix = "verisim-stack-"

    def __init__(
        self,
        workdir: Path | None = None,
        progress: Callable[[str], None] = print,
        overrides: dict[str, dict] | None = None,
    ):
        self._own_workdir = workdir is None  # a temporary one (logs) goes with stop() when nothing is left
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=self.workdir_prefix))
        self.progress = progress
        self.overrides = overrides or {}  # per-service constructor kwargs (extra_args, env, …)
        self.services: dict[str, BackingService] = {}
        self._lock = threading.Lock()

    # -- what a runtime says ----------------------------------------------------------------------------------------
    def make(self, name: str, port: int, workdir: Path | None = None, **kwargs) -> BackingService:
        """The service ``name`` on ``port`` (``workdir``: its own, for one beside the stack's; default the stack's)."""
        raise NotImplementedError

    def before_start(self) -> None:
        """Once, before any service is made."""

    def started_note(self) -> str:
        return ""

    # -- shared ----------------------------------------------------------------------------------------------------
    def start(self, services: Iterable[str] = SERVICES) -> Stack:
        """Start the services, return once every one answers a real round trip (bounded), or raise."""
        names = list(dict.fromkeys(services))
        unknown = [n for n in names if n not in SERVICES]
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; known: {', '.join(SERVICES)}")
        started = time.monotonic()
        try:
            self.before_start()
            for name, port in zip(names, free_ports(len(names)), strict=True):
                self.services[name] = self.make(name, port, **self.overrides.get(name, {}))
            # 1. cached preparation (templates, venvs) in parallel
            prepared = self._parallel({n: _timed(s.prepare) for n, s in self.services.items()})
            # 2. spawn on the main thread (PR_SET_PDEATHSIG belongs to the spawning thread), the slowest to answer
            # first (the longest ready_timeout: LocalStack's seconds of imports start before the others' spawns)
            for svc in sorted(self.services.values(), key=lambda s: -s.ready_timeout):
                svc.spawn()
            # 3. a real round trip from each, in parallel, each bounded by its own timeout
            ready = self._parallel({n: s.wait_ready for n, s in self.services.items()})
        except BaseException:
            self.stop()
            raise
        for name, seconds in ready.items():
            self.progress(f"  {name:<12} ready in {seconds:5.2f}s{self.services[name].ready_note(prepared[name])}")
        self.progress(f"stack ready in {time.monotonic() - started:.2f}s{self.started_note()}")
        return assemble(self.name, self.services, ready, prepared)

    def _parallel(self, calls: dict[str, Callable[[], Any]]) -> dict[str, Any]:
        """Run every call; when one fails, tell the others to give up, then raise the first real failure."""
        with ThreadPoolExecutor(max_workers=max(1, len(calls)), thread_name_prefix="stack") as pool:
            futures = {name: pool.submit(fn) for name, fn in calls.items()}
            done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                for svc in self.services.values():
                    svc.cancel.set()
        results, errors = {}, []
        for name, fut in futures.items():
            exc = fut.exception()
            if exc is not None:
                errors.append(exc)
            else:
                results[name] = fut.result()
        if errors:
            real = [e for e in errors if not (isinstance(e, ServiceStartError) and "abandoned" in e.reason)]
            raise (real or errors)[0]
        return results

    def stop(self) -> None:
        """Stop everything this provider started, in parallel. Idempotent."""
        with self._lock:
            services = list(self.services.values())
            if services:
                with ThreadPoolExecutor(max_workers=len(services)) as pool:
                    list(pool.map(lambda s: s.stop(), services))
            if self._own_workdir and not self.leftovers():
                shutil.rmtree(self.workdir, ignore_errors=True)

    def another(self, name: str, workdir: Path, **kwargs) -> BackingService:
        """One more instance of a service beside the stack's — its own port, work directory (logs) and name — e.g. a
        run's own Postgres on a capped disk (``data_cap``). Started and answering when this returns (or it raises,
        leaving nothing); the caller stops it."""
        (port,) = free_ports(1)
        svc = self.make(name, port, workdir=workdir, **kwargs)
        try:
            svc.prepare()
            svc.spawn()
            svc.wait_ready()
        except BaseException:
            svc.stop()
            raise
        return svc

    def service(self, name: str) -> BackingService:
        if name not in self.services:
            raise KeyError(f"{name!r} is not running in this stack; running: {', '.join(self.services)}")
        return self.services[name]

    def leftovers(self) -> dict[str, list]:
        """Whatever this provider started that is still alive (after ``stop`` this must be empty)."""
        return {n: left for n, s in self.services.items() if (left := s.leftovers())}

    def __enter__(self) -> StackProvider:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
