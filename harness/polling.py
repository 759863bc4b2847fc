"""Bounded polling: wait for a condition, never longer than a timeout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(predicate: Callable[[], T], timeout: float, interval: float = 0.1) -> T:
    """Call ``predicate`` until it returns something truthy or ``timeout`` seconds pass; returns its last value
    (falsy: the time ran out). For waits whose caller decides what a timeout means."""
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last or time.monotonic() >= deadline:
            return last
        time.sleep(interval)


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.1, what: str = "condition") -> T:
    """``poll_until``, and a ``TimeoutError`` naming ``what`` (and the last value seen) when the time runs out."""
    last = poll_until(predicate, timeout, interval)
    if not last:
        raise TimeoutError(f"{what} not reached within {timeout:.0f}s (last value: {last!r})")
    return last
