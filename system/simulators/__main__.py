"""``python -m system.simulators`` runs the data simulator (see ``--help``)."""

import sys

from system.simulators.data_simulator import main

sys.exit(main())
