"""CPU time per process family, read before and after a phase: where each job's cost went (API, workers, Postgres,
LocalStack, Kafka, Redis, the client).

A family is a leader and its descendants (``ManagedProcess.members``): Postgres' backends, the workers' job
processes. Its CPU is the sum, over its live members, of their own user+system time plus that of their reaped children
(``children_user``/``children_system``): a backend that exits between two readings is counted through its parent
and never twice. Local stack only: on the containers stack the services' processes belong to the containers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from harness.stack.provider import StackProvider

SYSTEM = ("api", "workers", "postgres", "localstack", "kafka", "redis")  # the system's own processes


def family_cpu_seconds(pids: list[int], reaped_children: bool = True) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + ((t.children_user + t.children_system) if reaped_children else 0.0)
    return total


class CpuMeter:
    """``families``: name → a callable giving the family's live pids now. ``client`` (this process, without the
    children it reaps: the stack's own processes are its children) is always added."""

    def __init__(self, families: dict[str, Callable[[], list[int]]]):
        self.families = families

    def read(self) -> dict[str, float]:
        out = {name: family_cpu_seconds(pids()) for name, pids in self.families.items()}
        out["client"] = family_cpu_seconds([os.getpid()], reaped_children=False)
        return out

    @staticmethod
    def per_job_ms(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
        """CPU ms per job by family, plus ``system`` (the system's own processes) and ``total``."""
        per = {name: round((after[name] - before[name]) * 1000 / max(jobs, 1), 2) for name in after if name in before}
        per["system"] = round(sum(v for k, v in per.items() if k in SYSTEM), 2)
        per["total"] = round(sum(v for k, v in per.items() if k not in ("system",)), 2)
        return per


def system_meter(provider: StackProvider, sut) -> CpuMeter | None:
    """A meter over a running system and its local stack; None on a stack whose processes are not ours to read
    (containers)."""
    services = provider.services
    if not services or not all(svc.pids() for svc in services.values()):
        return None
    # read when asked: a restarted service has new processes
    families: dict[str, Callable[[], list[int]]] = {name: svc.pids for name, svc in services.items()}
    families["api"] = lambda: sut.api.members() if sut.api else []
    families["workers"] = lambda: [pid for w in sut.workers for pid in w.members()]
    return CpuMeter(families)


def table(per_job: dict[str, float]) -> list[str]:
    """Lines of ``process  ms/job  share``, largest first; the system's own processes summed."""
    total = per_job.get("total") or 1e-9
    rows = sorted(((k, v) for k, v in per_job.items() if k not in ("system", "total")), key=lambda kv: -kv[1])
    lines = [f"    {k:<12} {v:>7.2f} ms/job  {v / total:>4.0%}" for k, v in rows]
    lines.append(
        f"    {'system':<12} {per_job.get('system', 0):>7.2f} ms/job  (API, workers, Postgres, LocalStack, "
        f"Kafka, Redis)"
    )
    lines.append(f"    {'total':<12} {total:>7.2f} ms/job")
    return lines
