"""simulate_load.py against the real system: every upload accepted and every job completed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from harness.reports.stage_report import stage_durations, summarise

ROOT = Path(__file__).resolve().parents[2]


def test_simulate_load_uploads_and_reports(system, tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "simulate_load.py",
            "--requests",
            "12",
            "--concurrency",
            "4",
            "--url",
            system.api_url,
            "--title",
            "Wer nur den lieben Gott",
            "--wait",
            "--timeout",
            "180",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    lines = [ln for ln in run.stdout.splitlines() if re.match(r"\[\s*\d+/12\]", ln)]
    assert len(lines) == 12 and all(" ok " in ln for ln in lines)
    assert re.search(
        r"summary: 12 requests .* 12 accepted, 0 failed; request time p50 [\d.]+s, p95 [\d.]+s", run.stdout
    )
    assert "jobs: {'completed': 12}" in run.stdout
    stages = summarise(stage_durations(w.log_path for w in system.workers))
    assert {"ingest", "analysis", "translation", "audio"} <= set(stages)


def test_bad_arguments_are_refused_with_a_message():
    run = subprocess.run(
        [sys.executable, "simulate_load.py", "--file", "/no/such/score.xml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "does not exist" in run.stderr
    run = subprocess.run(
        [sys.executable, "simulate_load.py", "--requests", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2 and "at least 1" in run.stderr


def test_failures_are_counted_and_exit_non_zero():
    run = subprocess.run(
        [sys.executable, "simulate_load.py", "--requests", "3", "--concurrency", "2", "--url", "http://127.0.0.1:9"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stdout.count("FAILED") == 3 and "3 failed" in run.stdout
