"""Time to a verdict: how long an engineer waits, from a cold ``pytest`` to its exit, for a few chaos tests.

``python -m harness.programs.verdict_time`` (``nox -s verdict-time``) runs ``pytest tests/chaos -k rate_limit`` (or the
arguments given after ``--``) in a fresh interpreter, as a user would, and splits the wall time into what the
command spent before the first test (interpreter, imports, collection), starting the stack (the plugin's own record
in ``reports/stack-history.jsonl``), and each test (its fixtures — the system it starts — included). Every run is
appended to ``reports/verdict-time.jsonl`` and compared with the previous run of the same command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "reports"
HISTORY = REPORTS / "verdict-time.jsonl"
DEFAULT_ARGS = ["tests/chaos", "-k", "rate_limit"]
GOAL_S = 15.0  # issue 31's goal for `pytest tests/chaos -k rate_limit` on a set-up machine


def _tests(junit: Path) -> tuple[float, list[dict]]:
    """pytest's session time and each test's (setup + call + teardown) from its JUnit XML."""
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None, f"no testsuite in {junit}"
    tests = []
    for case in suite.iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
        tests.append({"test": case.get("name"), "seconds": round(float(case.get("time", 0)), 2), "outcome": outcome})
    return float(suite.get("time", 0)), tests


def _stack_start(since: float) -> float | None:
    """The stack's start-up as the plugin recorded it during this run (None if it did not start one)."""
    if not (REPORTS / "stack-history.jsonl").exists():
        return None
    for line in reversed((REPORTS / "stack-history.jsonl").read_text().splitlines()):
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["at"]).replace(tzinfo=UTC).timestamp()
        except (ValueError, KeyError):
            continue
        return float(entry["total_seconds"]) if at >= since - 1 else None
    return None


def _previous(args: list[str]) -> dict | None:
    if not HISTORY.exists():
        return None
    runs = [json.loads(x) for x in HISTORY.read_text().splitlines() if x.strip()]
    return next((r for r in reversed(runs) if r.get("args") == args), None)


def measure(args: list[str]) -> dict:
    REPORTS.mkdir(exist_ok=True)
    junit = REPORTS / "verdict-time.xml"
    started = time.time()
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", f"--junitxml={junit}", "-q"],
        cwd=ROOT,
        check=False,
    )
    wall = time.monotonic() - t0
    session_s, tests = _tests(junit) if junit.exists() else (0.0, [])
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": args,
        "exit": proc.returncode,
        "wall_s": round(wall, 2),
        "before_tests_s": round(wall - session_s, 2),  # interpreter start, imports, collection, reports at exit
        "stack_start_s": _stack_start(started),
        "tests_s": round(sum(t["seconds"] for t in tests), 2),
        "tests": tests,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.programs.verdict_time",
        description="Time a cold pytest run of a few chaos tests, from the command to its exit, and say where the "
        "time went; each run is appended to reports/verdict-time.jsonl. Exits with pytest's own status.",
    )
    parser.add_argument("--goal", type=float, default=GOAL_S, help=f"seconds to compare with (default {GOAL_S:g})")
    parser.add_argument(
        "pytest_args",
        nargs="*",
        help=f"what pytest runs (default: {' '.join(DEFAULT_ARGS)}); put them after --",
    )
    ns = parser.parse_args(argv)
    args = ns.pytest_args or DEFAULT_ARGS
    previous = _previous(args)
    run = measure(args)
    with HISTORY.open("a") as f:
        f.write(json.dumps(run) + "\n")
    print(f"\ntime to a verdict: pytest {' '.join(args)}")
    print(f"  before the first test  {run['before_tests_s']:7.2f} s  (interpreter, imports, collection)")
    if run["stack_start_s"] is not None:
        print(f"  stack start            {run['stack_start_s']:7.2f} s  (inside the first test's setup)")
    for t in run["tests"]:
        print(f"  {t['test']:<60} {t['seconds']:7.2f} s  {t['outcome']}")
    met = "met" if run["wall_s"] <= ns.goal else "NOT met"
    print(f"  wall                   {run['wall_s']:7.2f} s  (goal {ns.goal:g} s: {met}; pytest exit {run['exit']})")
    if previous:
        print(f"  previous run           {previous['wall_s']:7.2f} s  ({previous['at']})")
    print(f"  saved to {HISTORY}")
    return int(run["exit"])


if __name__ == "__main__":
    sys.exit(main())
