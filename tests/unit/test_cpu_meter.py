"""The CPU meter counts a family's time whether its members are alive or already reaped, and never twice."""

from __future__ import annotations

import subprocess
import sys

from harness.drivers.cpu import CpuMeter, family_cpu_seconds

BURN = "import time\nt=time.process_time()\nwhile time.process_time()-t<{s}: pass\n{tail}"


def test_a_reaped_child_is_counted_through_its_parent_and_a_live_one_by_itself():
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import subprocess, sys, time\n"
                f"subprocess.run([sys.executable, '-c', {BURN.format(s=0.3, tail='')!r}])\n"  # burns 0.3 s, reaped
                f"child = subprocess.Popen([sys.executable, '-c', {BURN.format(s=0.3, tail='time.sleep(30)')!r}])\n"
                "print(child.pid, flush=True)\n"
                "time.sleep(30)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        live_child = int(parent.stdout.readline())
        import time

        meter = CpuMeter({"family": lambda: [parent.pid, live_child]})
        deadline = time.monotonic() + 20
        while (seconds := meter.read()["family"]) < 0.55 and time.monotonic() < deadline:
            time.sleep(0.1)  # until the live child has burnt its 0.3 s (a busy machine runs it later)
        assert 0.55 <= seconds <= 1.5, seconds  # 0.3 reaped + 0.3 live + two interpreters' start-up
        # the reaped child's 0.3 s counts only when asked for (the parent's own start-up, slower when coverage
        # measures it, is in both)
        own = family_cpu_seconds([parent.pid], reaped_children=False)
        assert family_cpu_seconds([parent.pid], reaped_children=True) - own >= 0.25
    finally:
        parent.kill()
        parent.wait()


def test_per_job_figures_add_up():
    per = CpuMeter.per_job_ms(
        {"api": 1.0, "workers": 2.0, "postgres": 0.5, "client": 0.1, "mock_openai": 0.0},
        {"api": 1.2, "workers": 2.6, "postgres": 0.7, "client": 0.2, "mock_openai": 0.0},
        100,
    )
    assert per["api"] == 2.0 and per["workers"] == 6.0 and per["postgres"] == 2.0 and per["client"] == 1.0
    assert per["system"] == 10.0 and per["total"] == 11.0
