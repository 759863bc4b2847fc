#!/usr/bin/env python3
"""Score upload load generator. See ``python3 simulate_load.py --help``."""

import sys

try:
    from system.simulators.simulate_load import main
except ImportError as exc:  # run outside the project's venv
    sys.exit(
        f"simulate_load.py needs the project's packages ({exc.name} is missing): run `python3 dev.py setup`, "
        "then `.venv/bin/python simulate_load.py ...` (or activate .venv)"
    )

if __name__ == "__main__":
    sys.exit(main())
