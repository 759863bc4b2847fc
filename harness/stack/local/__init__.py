"""The local provider: every backing service as a plain process on 127.0.0.1, no Docker."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from harness.stack.endpoints import Stack, assemble
from harness.stack.local.base import LocalService
from harness.stack.local.kafka import KafkaService
from harness.stack.local.localstack import LocalStackService
from harness.stack.local.mock_openai import MockOpenAIService
from harness.stack.local.postgres import PostgresService
from harness.stack.local.redis import RedisService
from harness.stack.process import ServiceStartError, free_ports
from harness.stack.provider import SERVICES, StackProvider


def _timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        t0 = time.monotonic()
        fn()
        return time.monotonic() - t0

    return run


class LocalProvider(StackProvider):
    name = "local"

    def __init__(
        self,
        workdir: Path | None = None,
        progress: Callable[[str], None] = print,
        overrides: dict[str, dict] | None = None,
    ):
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="verisim-stack-"))
        self.progress = progress
        self.overrides = overrides or {}  # per-service constructor kwargs (extra_args, env, …)
        self.services: dict[str, LocalService] = {}
        self._lock = threading.Lock()

    def _make(self, name: str, port: int) -> LocalService:
        kwargs = dict(self.overrides.get(name, {}))
        if name == "postgres":
            return PostgresService(self.workdir, port, **kwargs)
        if name == "redis":
            return RedisService(self.workdir, port, **kwargs)
        if name == "kafka":
            return KafkaService(self.workdir, port, **kwargs)
        if name == "localstack":
            return LocalStackService(self.workdir, port, progress=self.progress, **kwargs)
        if name == "mock_openai":
            return MockOpenAIService(self.workdir, port, **kwargs)
        raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")

    def start(self, services: Iterable[str] = SERVICES) -> Stack:
        names = list(dict.fromkeys(services))
        started = time.monotonic()
        try:
            ports = free_ports(len(names))
            for name, port in zip(names, ports, strict=True):
                self.services[name] = self._make(name, port)
            # 1. cached preparation (templates, venvs) in parallel
            prepared = self._parallel({n: _timed(s.prepare) for n, s in self.services.items()})
            # 2. spawn on the main thread (PR_SET_PDEATHSIG belongs to the spawning thread)
            for svc in self.services.values():
                svc.spawn()
            # 3. wait for a real round trip from each, in parallel, each bounded by its own timeout
            ready = self._parallel({n: s.wait_ready for n, s in self.services.items()})
        except BaseException:
            self.stop()
            raise
        for name, seconds in ready.items():
            extra = f" (+{prepared[name]:.2f}s preparing caches)" if prepared[name] > 0.05 else ""
            self.progress(f"  {name:<12} ready in {seconds:5.2f}s{extra}")
        self.progress(f"stack ready in {time.monotonic() - started:.2f}s (logs in {self.workdir / 'logs'})")
        return assemble(self.name, self.services, ready, prepared)

    def _parallel(self, calls: dict[str, Callable[[], object]]) -> dict[str, object]:
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
            service_errors = [e for e in errors if isinstance(e, ServiceStartError) and "abandoned" not in e.reason]
            raise (service_errors or errors)[0]
        return results

    def stop(self) -> None:
        with self._lock:
            services = list(self.services.values())
            # stop in parallel: LocalStack takes seconds, the others milliseconds
            with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
                list(pool.map(lambda s: s.stop(), services))
            if self._own_workdir and not self.leftovers():
                shutil.rmtree(self.workdir, ignore_errors=True)

    def service(self, name: str) -> LocalService:
        if name not in self.services:
            raise KeyError(f"{name!r} is not running in this stack; running: {', '.join(self.services)}")
        return self.services[name]

    def leftovers(self) -> dict[str, list[int]]:
        return {n: pids for n, s in self.services.items() if (pids := s.leftovers())}
