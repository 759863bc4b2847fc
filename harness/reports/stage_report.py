"""Per-stage durations from the workers' JSON logs (``"msg": "stage done"`` records): ``python -m harness.reports.stage_report LOG…``."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def stage_durations(paths) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for path in paths:
        for line in Path(path).read_text(errors="replace").splitlines():
            if '"stage done"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            out[rec["stage"]].append(rec["duration_ms"])
    return dict(out)


def summarise(durations: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    table = {}
    for stage, ms in sorted(durations.items()):
        q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
        table[stage] = {
            "count": len(ms),
            "p50_ms": round(q[49], 2),
            "p95_ms": round(q[94], 2),
            "max_ms": round(max(ms), 2),
        }
    return table


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.reports.stage_report", description=__doc__)
    ap.add_argument("logs", nargs="+", metavar="LOG", help="a worker's JSON log (the system's logs/worker-N.log)")
    args = ap.parse_args(argv)
    for stage, row in summarise(stage_durations(args.logs)).items():
        print(
            f"{stage:<22} n={row['count']:<6} p50 {row['p50_ms']:>9.2f} ms  p95 {row['p95_ms']:>9.2f} ms  "
            f"max {row['max_ms']:>9.2f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
