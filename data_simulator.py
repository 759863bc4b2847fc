#!/usr/bin/env python3
"""Data simulator (time series → inference jobs). See ``python3 data_simulator.py --help``."""

import sys

try:
    from system.simulators.data_simulator import main
except ImportError as exc:  # run outside the project's venv
    sys.exit(
        f"data_simulator.py needs the project's packages ({exc.name} is missing): run `python3 dev.py setup`, "
        "then `.venv/bin/python data_simulator.py ...` (or activate .venv)"
    )

if __name__ == "__main__":
    sys.exit(main())
