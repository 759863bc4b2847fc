"""system/'s coverage by package, from the combined data of ``nox -s coverage``.

    python -m harness.reports.coverage_report [--fail-under 85]

Prints one row per package (system/api, system/worker, …) and the total, saves ``reports/coverage/summary.json``
(each run's figures, for the next to compare), and exits 1 when the total is under the gate.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from harness.reports.report import REPORTS


def by_package(files: dict[str, dict]) -> dict[str, dict[str, float]]:
    """``{package: {statements, covered, percent}}`` from coverage's JSON ``files``, plus ``total``."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path, data in files.items():
        parts = Path(path).parts
        package = "/".join(parts[:2]) if len(parts) > 2 else parts[0]
        summary = data["summary"]
        for key in (package, "total"):
            sums[key][0] += summary["num_statements"]
            sums[key][1] += summary["covered_lines"]
    return {
        k: {"statements": n, "covered": c, "percent": round(100 * c / n, 1) if n else 100.0}
        for k, (n, c) in sorted(sums.items(), key=lambda kv: (kv[0] == "total", kv[0]))
        if n or k == "total"
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.reports.coverage_report", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", default=str(REPORTS / "coverage" / "coverage.json"), help="coverage's JSON report")
    parser.add_argument("--fail-under", type=float, default=85.0, help="the gate on the total, in percent")
    args = parser.parse_args(argv)
    table = by_package(json.loads(Path(args.json).read_text())["files"])
    print(f"{'package':<22} {'statements':>10} {'covered':>8} {'percent':>8}")
    for name, row in table.items():
        print(f"{name:<22} {row['statements']:>10} {row['covered']:>8} {row['percent']:>7.1f}%")
    out = Path(args.json).with_name("summary.json")
    out.write_text(json.dumps({"gate_percent": args.fail_under, "packages": table}, indent=2))
    total = table["total"]["percent"]
    if total < args.fail_under:
        print(f"coverage of system/ is {total:.1f}%, under the gate of {args.fail_under:.0f}%", file=sys.stderr)
        return 1
    print(f"coverage of system/ is {total:.1f}% (gate {args.fail_under:.0f}%); saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
