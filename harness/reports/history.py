"""Every run's figures, one JSON line each, in ``reports/bench-history.jsonl``: the next run (and a person) can
compare. ``previous(kind)`` gives the last line of a kind."""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness.reports import report


def path() -> Path:
    return report.REPORTS / "bench-history.jsonl"  # the one reports folder (VERISIM_REPORTS_DIR)


def append(kind: str, figures: dict) -> dict:
    line = {"kind": kind, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}
    p = path()
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    return line


def previous(kind: str) -> dict | None:
    p = path()
    if not p.exists():
        return None
    last = None
    for raw in p.read_text().splitlines():
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if doc.get("kind") == kind:
            last = doc
    return last
