"""How long each test module takes, kept so that several-at-a-time runs start their longest modules first.

``pytest -n 3 --dist loadfile`` (CI's parallel steps) hands out whole modules in collection order: a module of
minutes collected last starts when the others are nearly done, and the step ends on it alone. Handed out longest
first, the modules fill the workers evenly (the longest-processing-time rule). ``tests/durations.json`` holds each
module's seconds from a CI run's JUnit files, as ``pytest-split`` keeps its ``.test_durations``; a module it does not
name keeps its place after the ones it does.

    python -m harness.reports.durations reports/junit*.xml > tests/durations.json   # refresh after a CI run
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

TABLE = Path(__file__).resolve().parents[2] / "tests" / "durations.json"


def from_junit(paths: list[Path]) -> dict[str, float]:
    """Each test module's seconds (``tests/x/test_y.py``: the sum of its test cases), the most any file says."""
    out: dict[str, float] = {}
    for path in paths:
        seconds: dict[str, float] = {}
        for case in ET.parse(path).getroot().iter("testcase"):
            module = case.get("classname", "").replace(".", "/") + ".py"
            seconds[module] = seconds.get(module, 0.0) + float(case.get("time") or 0)
        for module, s in seconds.items():
            out[module] = max(out.get(module, 0.0), round(s, 1))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def load(path: Path = TABLE) -> dict[str, float]:
    """The kept table ({} when there is none or it does not parse)."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in table.items()} if isinstance(table, dict) else {}


def longest_first(items: list[Any], table: dict[str, float], root: Path) -> list[Any]:
    """``items`` (pytest's) with their modules in order of the table's seconds, longest first; a module's own tests
    in their order, modules the table lacks after the rest in theirs."""
    first_seen: dict[str, int] = {}
    for item in items:
        first_seen.setdefault(_module(item, root), len(first_seen))

    def key(item: Any) -> tuple[float, int]:
        module = _module(item, root)
        return (-table.get(module, 0.0), first_seen[module])

    return sorted(items, key=key)  # stable: within a module the collected order stays


def _module(item: Any, root: Path) -> str:
    path = Path(str(item.fspath))
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or any(a.startswith("-") for a in args):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    print(json.dumps(from_junit([Path(a) for a in args]), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
