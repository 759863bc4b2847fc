"""Statistics shared by the simulators and the suite's gates."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation between the closest ranks (numpy's default and
    ``statistics.quantiles(method="inclusive")``), exact where neighbours are equal and never outside
    [min, max]. None for no values."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    if lo >= len(s) - 1:
        return s[-1]
    frac = pos - lo
    value = s[lo] + (s[lo + 1] - s[lo]) * frac
    return min(max(value, s[lo]), s[lo + 1])  # rounding never leaves the bracketing pair
