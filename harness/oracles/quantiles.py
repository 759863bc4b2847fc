"""The percentile every gate of the suite judges with: nearest rank, the smallest observation with at least ``q`` % of
all observations at or below it. "p95 <= 800 ms" then means what an SLO means — at least 95 % of the observations
took 800 ms or less — and it is the decision Prometheus' ``histogram_quantile`` makes when the target is a bucket
bound (``harness.oracles.two_judges``), so the two judges read one promise alike. The suite's own code: the system's
figures (``system/stats.py``) are never the yardstick they are judged by.
"""

from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0 < q <= 100) by nearest rank; None for no values."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, math.ceil(round(q / 100 * len(s), 9)))  # round: 0.95 * 20 is 19, not 19.000000000000004
    return s[min(rank, len(s)) - 1]
