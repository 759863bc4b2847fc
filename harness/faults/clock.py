"""Clock skew on one worker (Jepsen's clock nemesis, on one host): a worker of its own whose wall clock, as its Python
code reads it, is minutes ahead of or behind the machine's, for a fault window. Monotonic clocks, sleeps and timed
waits stay true, as on a host whose wall clock alone is wrong. What must stay right is every time it stores: the
content oracle checks each job's stages against the job's own life (``times_impossible``).

Why not Debian's libfaketime (``LD_PRELOAD``): its 0.9.10 (bookworm) breaks what a wrong clock does not — Python
3.11's ``time.sleep`` fails with EINVAL under ``FAKETIME_DONT_FAKE_MONOTONIC`` and hangs without it, and librdkafka's
timed waits on the faked clock wait the offset out on the real one (a worker that never got ready). The skew is
applied where the worker's own timestamps come from instead: ``skew_site/sitecustomize.py``, loaded before any
module of the system.

    with skewed_worker(sut, timeline, "clock_ahead", offset_s=300) as fw: ...   # fw.evidence["skewed_jobs"]
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from harness.faults.timeline import FaultTimeline, FaultWindow

SITE = Path(__file__).resolve().parent / "skew_site"


def skewed_env(offset_s: float, base_pythonpath: str | None = None) -> dict[str, str]:
    """The environment that moves a Python process's wall clock by ``offset_s`` seconds (negative: behind)."""
    path = str(SITE) if not base_pythonpath else f"{SITE}{os.pathsep}{base_pythonpath}"
    return {"PYTHONPATH": path, "VERISIM_CLOCK_SKEW_S": f"{offset_s:g}"}


def _count(log_path, msg: str) -> int:
    n = 0
    try:
        lines = open(log_path, errors="replace").read().splitlines()
    except FileNotFoundError:
        return 0
    for line in lines:
        with contextlib.suppress(ValueError):
            n += json.loads(line).get("msg") == msg
    return n


@contextlib.contextmanager
def skewed_worker(
    sut, timeline: FaultTimeline, name: str, offset_s: float, concurrency: int = 4, sabotage: str | None = None
) -> Iterator[FaultWindow]:
    """One more worker, its clock ``offset_s`` off, for the window; stopped cleanly when it ends. Evidence: the jobs
    it finished, and its own warnings that it found its clock off Postgres's."""
    with timeline.window(name, "process", offset_s=offset_s) as fw:
        env = skewed_env(offset_s, sut.env.get("PYTHONPATH"))
        proc = sut.start_worker(concurrency=concurrency, grace=5, sabotage=sabotage, env=env, forkable=False)
        # the fault is in effect once the worker runs (unforked, it imports torch first: seconds, ~20 under load);
        # the window's time counts from then, or a slow start would leave it no time to run a job
        fw.evidence["ready_after_s"] = round(time.time() - fw.start, 2)
        fw.start = time.time()
        try:
            yield fw
        finally:
            proc.stop()
            if proc in sut.workers:
                sut.workers.remove(proc)
            fw.evidence["skewed_jobs"] = _count(proc.log_path, "job done")
            fw.evidence["clock_warnings"] = _count(
                proc.log_path, "this worker's clock is off Postgres's: stage times are corrected"
            )
