"""CI's CPU by kind of process (harness/reports/cpu_kinds.py): what each command line counts as, and a sampler that
counts a process's CPU as it is used."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from harness.reports.cpu_kinds import kind_of, per_second, read_timeline


def test_each_process_of_a_run_is_named_by_its_kind():
    forked = "/w/.venv/bin/python -B -c from multiprocessing.forkserver import main; main(8, 9, ['torch'], **{})"
    score = forked.replace("['torch']", "['music21', 'music21.converter', 'system.pipelines.score_read']")
    assert kind_of(forked) == "system: api, workers (forked)"
    assert kind_of(forked.replace("['torch']", "['torch', 'music21']")) == "system: api, workers (forked)"
    assert kind_of(score) == "score job children"
    # a score server forked from its worker, and its job children, share the worker's command line: their name tells
    assert (
        kind_of(forked, "verisim-score", "4242")
        == kind_of("python -m system.worker", "verisim-score")
        == ("score job children")
    )
    assert kind_of("python -m system.worker", "python") == "system: workers"
    assert kind_of("/root/.cache/verisim/localstack-4.13.1/bin/python -m localstack.runtime.main") == "localstack"
    assert kind_of("/usr/lib/postgresql/15/bin/postgres -D /tmp/x") == "postgres"
    assert kind_of("python -c import sys;exec(eval(sys.stdin.readline()))") == "pytest (xdist workers)"
    assert kind_of("", "kworker/0:1", "2") == "kernel threads"
    assert kind_of("", "python", "4242") == "other: python"  # ended, not yet reaped: its name
    assert kind_of("/usr/bin/something --flag") == "other: something"


def test_the_sampler_counts_a_busy_process_by_its_kind(tmp_path):
    """A process that burns 1.5 s of CPU (its command line names stress-ng) is counted under that kind."""
    out = tmp_path / "cpu.json"
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5: pass\ntime.sleep(30)"
    sampler = subprocess.Popen([sys.executable, "-m", "harness.reports.cpu_kinds", str(out)])
    busy = subprocess.Popen([sys.executable, "-c", burn, "stress-ng"])
    try:
        used, deadline = 0.0, time.monotonic() + 15
        while used < 1.4 and time.monotonic() < deadline:
            time.sleep(0.5)
            if out.exists():
                used = json.loads(out.read_text())["cpu_s"].get("stress-ng (faults)", 0.0)
        assert 1.4 <= used < 3, out.read_text() if out.exists() else "no reading written"
    finally:
        busy.kill()
        sampler.terminate()
        sampler.wait(5)


def test_what_ran_before_the_sampler_started_counts_from_its_start_only(tmp_path):
    """A process that had burnt 1 s of CPU before the sampler started, and burns none after, is counted at ~0."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1: pass\nprint(1, flush=True)\ntime.sleep(30)"
    busy = subprocess.Popen([sys.executable, "-c", burn, "stress-ng"], stdout=subprocess.PIPE)
    out = tmp_path / "cpu.json"
    try:
        busy.stdout.readline()  # it has burnt its second
        sampler = subprocess.Popen([sys.executable, "-m", "harness.reports.cpu_kinds", str(out)])
        try:
            deadline = time.monotonic() + 15
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.5)
            assert json.loads(out.read_text())["cpu_s"].get("stress-ng (faults)", 0.0) < 0.3, out.read_text()
        finally:
            sampler.terminate()
            sampler.wait(5)
    finally:
        busy.kill()


def test_a_timeline_shows_each_second_and_a_phase_reads_its_share(tmp_path):
    """--timeline appends a reading a second; a span of it reads as CPU seconds per second by kind (1.0: one core)."""
    out = tmp_path / "cpu.jsonl"
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 2.5: pass\ntime.sleep(30)"
    sampler = subprocess.Popen([sys.executable, "-m", "harness.reports.cpu_kinds", "--timeline", str(out)])
    time.sleep(0.5)
    started = time.time()
    busy = subprocess.Popen([sys.executable, "-c", burn, "stress-ng"])
    try:
        deadline = time.monotonic() + 15
        while sum(r["cpu_s"].get("stress-ng (faults)", 0) for r in read_timeline(out)) < 2.4:
            assert time.monotonic() < deadline, out.read_text() if out.exists() else "no reading written"
            time.sleep(0.5)
    finally:
        busy.kill()
        sampler.terminate()
        sampler.wait(5)
    lines = read_timeline(out)
    assert len(lines) >= 3 and all(b["t"] - a["t"] < 2 for a, b in zip(lines, lines[1:], strict=False))
    burnt = sum(r["cpu_s"].get("stress-ng (faults)", 0) for r in lines)
    end = lines[-1]["t"]  # a span that holds every reading since the burner started reads all it burnt, per second
    share = per_second(lines, started - 0.5, end, top=50)["stress-ng (faults)"]
    assert share == pytest.approx(burnt / (end - started + 0.5), abs=0.02) and 0 < share <= 1.05, (share, burnt)
    assert per_second(lines, started - 100, started - 50) == {} and read_timeline(tmp_path / "none") == []
