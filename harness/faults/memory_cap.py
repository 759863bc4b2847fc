"""A worker held under a memory cap (a container's memory limit, as Kubernetes and Docker set one): the kernel's
memory cgroup — v2 ``memory.max`` or v1 ``memory.limit_in_bytes`` — around one worker's processes for a fault
window, set at what is charged to it when it starts plus ``headroom_mb`` (a v2 kernel, or v1 since Linux 6, charges a
process's earlier pages where they were: the group then holds what the worker allocates from now on). Past the cap the kernel reclaims what it can (page
cache: the worker's own log writes) and kills a process that still needs more (the OOM killer, inside the group
only); a killed worker is replaced when the window ends, as an orchestrator would restart it.

The evidence is the kernel's count: how often the group hit its cap (v1 ``memory.failcnt``, v2 ``memory.events``
``max``) and the OOM kills in it. Needs root and a writable cgroup filesystem (``/sys/fs/cgroup``); where there is
none the window fails with that said.

    with memory_cap(worker, timeline, "worker_memory_cap", headroom_mb=2) as fw:
        ...                        # load; live_events(fw)["cap_hits"] says whether the kernel has counted a hit yet
    fw.evidence["cap_hits"]

A group's peak at its cap is no evidence: the kernel charges a group in per-CPU batches of 64 pages ahead of use, so
a worker that needs less than its headroom can still take the group's count to the cap. Only a refused charge
(``max``) or a kill shows the cap held the worker back; a load that must show it runs until ``live_events`` does.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from harness.faults.timeline import FaultTimeline, FaultWindow

CGROUP = Path("/sys/fs/cgroup")
HEADROOM_MB = 2.0  # what the worker may allocate past what the group holds when the window starts


class CgroupUnavailable(RuntimeError):
    """No memory cgroup can be made here."""


class MemoryGroup:
    """One memory cgroup of this run's own, v2 or v1, removed on exit (its processes back where they were)."""

    def __init__(self, name: str, root: Path = CGROUP, path: Path | None = None):
        """``path``: an existing group's own directory (an orphan's, to remove it)."""
        self.v2 = (root / "cgroup.controllers").exists()
        self.base = root if self.v2 else root / "memory"
        self.path = path or self.base / f"verisim-{name}-{os.getpid()}"
        self.root = root
        self.pids: list[int] = []

    def _write(self, leaf: str, value: str | int, where: Path | None = None) -> None:
        (where or self.path).joinpath(leaf).write_text(str(value))

    def _read(self, leaf: str) -> str:
        return self.path.joinpath(leaf).read_text()

    def create(self) -> MemoryGroup:
        if not self.base.is_dir():
            raise CgroupUnavailable(f"no memory cgroup hierarchy at {self.base}")
        self.remove_orphans()
        try:
            if self.v2 and "memory" not in (self.base / "cgroup.subtree_control").read_text().split():
                self._write("cgroup.subtree_control", "+memory", self.base)
            self.path.mkdir()
        except OSError as e:
            raise CgroupUnavailable(f"cannot make a memory cgroup under {self.base}: {e} (needs root)") from e
        if not self.v2:  # what its processes hold comes with them where the kernel still can (v1, before 6.x)
            with contextlib.suppress(OSError):
                self._write("memory.move_charge_at_immigrate", 3)
        return self

    def remove_orphans(self) -> None:
        """Remove the groups a run that died left behind (their names end in its pid)."""
        for group in self.base.glob("verisim-*-*"):
            owner = group.name.rsplit("-", 1)[-1]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                with contextlib.suppress(OSError):
                    MemoryGroup(group.name, self.root, path=group).remove()

    def usage(self) -> int:
        return int(self._read("memory.current" if self.v2 else "memory.usage_in_bytes"))

    def limit(self, nbytes: int) -> None:
        self._write("memory.max" if self.v2 else "memory.limit_in_bytes", nbytes)
        if self.v2:
            with contextlib.suppress(OSError):
                self._write("memory.swap.max", 0)

    def add(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, OSError):
                self._write("cgroup.procs", pid)
                self.pids.append(pid)

    def events(self) -> dict[str, int]:
        """``cap_hits``: times a charge met the cap; ``oom_kills``: processes the kernel killed in the group;
        ``peak_bytes``: the most it held."""
        if self.v2:
            ev = dict(line.split() for line in self._read("memory.events").splitlines())
            peak = int(self._read("memory.peak")) if self.path.joinpath("memory.peak").exists() else self.usage()
            return {"cap_hits": int(ev.get("max", 0)), "oom_kills": int(ev.get("oom_kill", 0)), "peak_bytes": peak}
        oom = dict(line.split() for line in self._read("memory.oom_control").splitlines())
        return {
            "cap_hits": int(self._read("memory.failcnt")),
            "oom_kills": int(oom.get("oom_kill", 0)),
            "peak_bytes": int(self._read("memory.max_usage_in_bytes")),
        }

    def remove(self) -> None:
        """Its processes back in the parent group, then the group itself (a killed process may take a moment)."""
        if not self.path.exists():
            return
        for pid in self._read("cgroup.procs").split():
            with contextlib.suppress(OSError):
                self._write("cgroup.procs", pid, self.base)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def live_events(fw: FaultWindow) -> dict[str, int]:
    """The kernel's counts for an open ``memory_cap`` window's group, read now (the window's evidence gets them only
    when it ends)."""
    return MemoryGroup(fw.name, path=Path(fw.evidence["cgroup"])).events()


@contextlib.contextmanager
def memory_cap(worker, timeline: FaultTimeline, name: str, headroom_mb: float = HEADROOM_MB) -> Iterator[FaultWindow]:
    """``worker``: a ``ManagedProcess`` (its whole family goes under the cap)."""
    group = MemoryGroup(name)
    with timeline.window(name, "process", target=worker.name, headroom_mb=headroom_mb) as fw:
        group.create()
        try:
            group.add(worker.members())
            held = group.usage()
            group.limit(held + int(headroom_mb * 2**20))
            fw.evidence["held_bytes"] = held
            fw.evidence["cgroup"] = str(group.path)
            yield fw
        finally:
            try:
                fw.evidence.update(group.events())
            finally:
                group.remove()
        fw.evidence["worker_survived"] = worker.proc is not None and worker.proc.poll() is None
