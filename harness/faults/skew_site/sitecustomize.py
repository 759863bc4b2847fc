"""Loaded at interpreter start-up by a process whose ``PYTHONPATH`` starts with this folder (``harness.faults.clock``):
with ``VERISIM_CLOCK_SKEW_S`` set, the process's wall clock as ``time.time``/``time.time_ns`` read it is that many
seconds off, before any other module imports them. ``datetime.now`` reads the C clock and stays true: the system
reads the wall clock through ``time.time`` only (tests/unit/test_open_model.py keeps it so). ``datetime.datetime``
is not replaced: a subclass in its place cannot pickle a datetime (multiprocessing sends them). Monotonic clocks,
sleeps and timed waits stay true, as on a host whose wall clock alone is wrong."""

import os

_offset = float(os.environ.get("VERISIM_CLOCK_SKEW_S") or 0)
if _offset:
    import time as _time

    _time_real, _time_ns_real = _time.time, _time.time_ns

    def _time_skewed() -> float:
        return _time_real() + _offset

    def _time_ns_skewed() -> int:
        return _time_ns_real() + int(_offset * 1e9)

    _time.time, _time.time_ns = _time_skewed, _time_ns_skewed
