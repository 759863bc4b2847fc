"""Process faults: kill (SIGKILL), pause (SIGSTOP/SIGCONT) and restart, for a worker and for each backing service.

Local processes get signals; on the containers stack the same operations are Docker's kill/pause/unpause/stop/start
(``harness.stack.container_runtime.ContainerService``). Each operation lands on the fault timeline.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from harness.faults.timeline import FaultTimeline, FaultWindow
from harness.stack.process import ManagedProcess


class ProcessFaults:
    def __init__(self, timeline: FaultTimeline, provider=None, overrides: dict | None = None):
        self.timeline = timeline
        self.provider = provider  # the stack's provider (local or containers), for backing services
        self.overrides = overrides or {}  # service name -> a service of the caller's own (e.g. a run's own broker)

    def _service(self, name: str):
        return self.overrides.get(name) or self.provider.service(name)

    # -- workers (any ManagedProcess) ---------------------------------------------------------------------------
    def kill(self, proc: ManagedProcess, name: str = "worker_kill") -> None:
        with self.timeline.window(name, "process", target=proc.name, signal="SIGKILL"):
            proc.proc.send_signal(signal.SIGKILL)
            proc.proc.wait(10)

    @contextlib.contextmanager
    def pause(self, proc: ManagedProcess, name: str = "worker_pause") -> Iterator[FaultWindow]:
        with self.timeline.window(name, "process", target=proc.name, signal="SIGSTOP") as w:
            pids = proc.members()
            _signal(pids, signal.SIGSTOP)
            try:
                yield w
            finally:
                _signal(pids, signal.SIGCONT)

    # -- backing services ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def service_down(self, service: str, name: str | None = None) -> Iterator[FaultWindow]:
        """The service is stopped for the block, then started again on the same port (data kept where it has any)."""
        svc = self._service(service)
        with self.timeline.window(name or f"{service}_restart", "process", target=service, action="stop+start") as w:
            svc.halt()
            try:
                yield w
            finally:
                w.params["ready_after_restart_s"] = round(svc.start_again(), 3)

    @contextlib.contextmanager
    def service_killed(self, service: str) -> Iterator[FaultWindow]:
        """SIGKILL (``docker kill``) the service — no shutdown, no flush — then start it again after the block."""
        svc = self._service(service)
        with self.timeline.window(f"{service}_kill", "process", target=service, signal="SIGKILL") as w:
            svc.signal(signal.SIGKILL)
            try:
                yield w
            finally:
                w.params["ready_after_restart_s"] = round(svc.start_again(), 3)

    @contextlib.contextmanager
    def service_paused(self, service: str) -> Iterator[FaultWindow]:
        svc = self._service(service)
        with self.timeline.window(f"{service}_pause", "process", target=service, signal="SIGSTOP") as w:
            svc.signal(signal.SIGSTOP)
            try:
                yield w
            finally:
                svc.signal(signal.SIGCONT)


def _signal(pids, sig) -> None:
    import os

    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
