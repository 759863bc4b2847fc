"""A short real load for the SLO sabotage tests (test_slo_sabotage.py, test_backlog_sabotage.py): Locust as a
subprocess against a sabotaged system, every request counted."""

from __future__ import annotations

from harness.programs import load
from harness.reports import report

SECONDS = 12  # of Locust per test: enough for ~100 requests of the kind under test


def short_load(stack, sut, users: int, user_classes=("InferenceSubmitter",), ceilings: tuple[str, ...] = ()) -> dict:
    """``SECONDS`` of Locust against ``sut`` and what it measured; no capacity burst, every request counts (no
    ``--reset-stats``: in 12 s the ramp-up is most of the run), and no raw ceiling timed first unless the verdict
    under test divides by it (``ceilings``)."""
    return load.measure(
        stack,
        sut.api_url,
        sut.queue_name,
        sut.dlq_name,
        users,
        SECONDS,
        report.new_run_dir(),
        user_classes=list(user_classes),
        burst_requests=0,
        reset_stats=False,
        ceilings=ceilings,
    )
