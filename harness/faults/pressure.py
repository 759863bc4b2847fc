"""Host pressure beside the system under test: Debian's ``stress-ng`` burning CPU or holding and touching memory for a
fault window (Pumba's and LitmusChaos' stress experiments; installed by ``python3 dev.py``). The evidence is what
stress-ng itself reports when it stops: its bogo operations (a stressor that never ran reports none).

    with pressure("cpu", timeline, "cpu_hog", workers=2, load=80) as fw: ...    # fw.evidence["stressor_ops"]
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator

from harness.faults.timeline import FaultTimeline, FaultWindow

STRESSORS = ("cpu", "vm")
_METRIC = re.compile(r"metrc: \[\d+\]\s+(\w+)\s+(\d+)\s")


def command(stressor: str, workers: int | None = None, load: int | None = None, bytes: str | None = None) -> list[str]:
    """The stress-ng command line for one stressor, running until it is stopped."""
    if stressor not in STRESSORS:
        raise ValueError(f"unknown stressor {stressor!r}; choose from {', '.join(STRESSORS)}")
    exe = shutil.which("stress-ng")
    if exe is None:
        raise RuntimeError("stress-ng is not installed: `python3 dev.py` installs it (Debian's stress-ng)")
    n = workers or (os.cpu_count() or 1 if stressor == "cpu" else 1)
    args = [exe, f"--{stressor}", str(n), "--metrics-brief", "--timeout", "0"]
    if stressor == "cpu":
        args += ["--cpu-load", str(load or 100)]
    else:
        args += ["--vm-bytes", bytes or "25%", "--vm-keep"]
    return args


def bogo_ops(output: str, stressor: str) -> int:
    """The bogo operations stress-ng reported for ``stressor`` when it stopped (0: none reported)."""
    return sum(int(m.group(2)) for m in _METRIC.finditer(output) if m.group(1) == stressor)


@contextlib.contextmanager
def pressure(stressor: str, timeline: FaultTimeline, name: str, **params) -> Iterator[FaultWindow]:
    """stress-ng for as long as the window lasts, stopped (SIGINT: it reports its metrics) when it ends."""
    cmd = command(stressor, **params)
    with timeline.window(name, "host", stressor=stressor, **params) as fw:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            yield fw
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                out, _ = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            fw.evidence["stressor_ops"] = bogo_ops(out or "", stressor)
            fw.evidence["stressor_exit"] = proc.returncode
