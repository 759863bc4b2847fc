"""``python -m harness.sabotage <defect>[,…] <module> [args…]`` — run ``python -m <module>`` with defects planted.

``python -m harness.sabotage --list`` prints the catalog."""

from __future__ import annotations

import runpy
import sys


def main(argv: list[str]) -> None:
    from harness.sabotage import CATALOG, plant

    if not argv or argv[0] in ("-h", "--help", "--list"):
        print(__doc__.strip() + "\n")
        for d in CATALOG.values():
            print(f"  {d.name:<24} [{d.target}] {d.what}")
        raise SystemExit(0 if argv else 2)
    if len(argv) < 2:
        raise SystemExit("usage: python -m harness.sabotage <defect>[,…] <module> [args…]")
    names, module, rest = argv[0], argv[1], argv[2:]
    from system.logs import setup_logging  # the defects log as the system does

    setup_logging("INFO")
    plant(names)
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
