"""Five seeded time-series patterns with noise, shared by the data simulator, LSTM training and the tests.

``generate(pattern, n, seed)`` always returns the same series for the same arguments. Parameters (level, slope,
period, …) are drawn from the seed too, so a seed sweep gives a family of series, not one curve.
"""

from __future__ import annotations

import math
import random

PATTERNS = ("linear", "seasonal", "exponential", "cyclical", "random_walk")


def generate(pattern: str, n: int, seed: int = 0, noise: float = 1.0) -> list[float]:
    """``n`` values of ``pattern``; ``noise`` scales the Gaussian noise (0 gives the clean curve)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {', '.join(PATTERNS)}")
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = random.Random(f"{pattern}:{seed}")
    level = rng.uniform(10, 100)
    if pattern == "linear":
        slope = rng.uniform(-2, 2) or 0.5
        sd = 0.5 * noise
        return [level + slope * t + rng.gauss(0, sd) for t in range(n)]
    if pattern == "seasonal":
        period = rng.choice((7, 12, 24))
        amp = rng.uniform(5, 20)
        trend = rng.uniform(-0.1, 0.1)
        phase = rng.uniform(0, 2 * math.pi)
        sd = 0.05 * amp * noise
        return [
            level + trend * t + amp * math.sin(2 * math.pi * t / period + phase) + rng.gauss(0, sd) for t in range(n)
        ]
    if pattern == "exponential":
        rate = rng.uniform(0.01, 0.05)
        sd = 0.01 * noise
        return [level * math.exp(rate * t) * (1 + rng.gauss(0, sd)) for t in range(n)]
    if pattern == "cyclical":
        # long, irregular business-cycle-like swings: two incommensurate periods, neither a calendar season
        p1, p2 = rng.uniform(30, 60), rng.uniform(11, 19)
        a1, a2 = rng.uniform(10, 25), rng.uniform(3, 8)
        sd = 0.05 * (a1 + a2) * noise
        return [
            level + a1 * math.sin(2 * math.pi * t / p1) + a2 * math.sin(2 * math.pi * t / p2 + 1.0) + rng.gauss(0, sd)
            for t in range(n)
        ]
    # random walk
    step = rng.uniform(0.5, 2.0) * max(noise, 1e-9)
    out, x = [], level
    for _ in range(n):
        out.append(x)
        x += rng.gauss(0, step)
    return out


def split(pattern: str, n: int, horizon: int, seed: int = 0, noise: float = 1.0) -> tuple[list[float], list[float]]:
    """``n`` observed values and the ``horizon`` true values that follow them (held out to score forecasts)."""
    series = generate(pattern, n + horizon, seed, noise)
    return series[:n], series[n:]
