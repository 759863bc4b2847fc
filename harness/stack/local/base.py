"""The shape every local service follows: prepare (cached, may run in a thread) → spawn (main thread) → wait_ready."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from harness.stack.process import ManagedProcess, ServiceStartError


class LocalService:
    name: str = "service"
    ready_timeout: float = 30.0

    def __init__(self, workdir: Path, port: int):
        self.workdir = workdir
        self.port = port
        self.process: ManagedProcess | None = None
        self.cancel = threading.Event()  # set by the provider when a sibling failed: stop waiting

    @property
    def log_path(self) -> Path:
        return self.workdir / "logs" / f"{self.name}.log"

    def prepare(self) -> None:
        """Slow, cacheable work (templates, venvs). Safe to run off the main thread."""

    def spawn(self) -> None:
        raise NotImplementedError

    def probe(self) -> None:
        """One real round trip; raises until the service answers."""
        raise NotImplementedError

    def after_ready(self) -> None:
        """Create what the stack promises to exist (buckets, queues, databases)."""

    def wait_ready(self) -> float:
        assert self.process is not None
        seconds = self.process.wait_ready(self.probe, self.ready_timeout, cancel=self.cancel)
        try:
            self.after_ready()
        except Exception as exc:
            raise ServiceStartError(
                self.name, f"ready, but setting up failed: {exc!r}", self.log_path, self.process.log_tail()
            ) from exc
        return seconds

    def endpoint(self):
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    # -- faults: the same process, on the same port ---------------------------------------------------------------
    def halt(self) -> None:
        """Stop the server but keep what a restart needs (data directory, port)."""
        if self.process is not None:
            self.process.stop()

    def start_again(self) -> float:
        """Start it again on the same port (main thread) and wait for a real round trip."""
        self.cancel.clear()
        self.spawn()
        return self.wait_ready()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process family (SIGSTOP/SIGCONT pause and resume it, SIGKILL kills it)."""
        import os
        import signal as signals
        import time

        pids = self.process.members()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if sig == signals.SIGKILL:
            # reap it: a zombie still "exists", and Postgres refuses to start while its lock file names a live PID
            self.process.proc.wait(10)
            deadline = time.monotonic() + 10
            while self.process.leftovers() and time.monotonic() < deadline:
                time.sleep(0.05)

    def leftovers(self) -> list[int]:
        return self.process.leftovers() if self.process else []


def require_binary(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ServiceStartError(name, f"`{name}` is not installed. Install it with: {install_hint}")
    return path
