"""The local runtime: a backing service as a plain process on 127.0.0.1 (``ManagedProcess``), no Docker."""

from __future__ import annotations

import os
import shutil
import signal as signals
import time

from harness.stack.process import ManagedProcess, ServiceStartError
from harness.stack.service import BackingService


class LocalService(BackingService):
    """Subclasses set ``self.process`` in ``spawn``."""

    process: ManagedProcess | None = None
    # whether ``stop`` kills it outright, as the containers runtime's force removal does: for a process whose graceful
    # shutdown only tidies state under a work directory that goes with it (``halt``, which keeps the data, still asks)
    killed_on_stop = False

    def ready_note(self, prepared_s: float) -> str:
        return f" (+{prepared_s:.2f}s preparing caches)" if prepared_s > 0.05 else ""

    def wait_ready(self) -> float:
        assert self.process is not None, "spawn first"
        seconds = self.process.wait_ready(self.probe, self.ready_timeout, cancel=self.cancel)
        try:
            self.after_ready()
        except Exception as exc:
            raise ServiceStartError(
                self.name, f"ready, but setting up failed: {exc!r}", self.log_path, self.process.log_tail()
            ) from exc
        return seconds

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill() if self.killed_on_stop else self.process.stop()

    # -- faults: the same process, on the same port ---------------------------------------------------------------
    def halt(self) -> None:
        if self.process is not None:
            self.process.stop()

    def start_again(self) -> float:
        self.cancel.clear()
        self.spawn()
        seconds = self.wait_ready()
        self.after_restart()
        return seconds

    def exited(self) -> bool:
        return self.process is not None and self.process.proc is not None and not self.process.alive()

    def signal(self, sig: int) -> None:
        assert self.process is not None, "not started"
        for pid in self.process.members():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if sig == signals.SIGKILL:
            # reap it: a zombie still "exists", and Postgres refuses to start while its lock file names a live PID
            if self.process.proc is not None:
                self.process.proc.wait(10)
            deadline = time.monotonic() + 10
            while self.process.leftovers() and time.monotonic() < deadline:
                time.sleep(0.05)

    def leftovers(self) -> list[int]:
        return self.process.leftovers() if self.process else []

    def pids(self) -> list[int]:
        return self.process.members() if self.process else []


def require_binary(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ServiceStartError(name, f"`{name}` is not installed. Install it with: {install_hint}")
    return path
