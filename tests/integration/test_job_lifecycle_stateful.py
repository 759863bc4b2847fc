"""The job lifecycle state machine (``harness.programs.lifecycle``) against the real stack: sequences of submissions (valid and
invalid), status reads, duplicate deliveries, worker kills and pauses and restarts of Redis, Postgres and Kafka; the
invariants are listed there. Steps per sequence and sequences per run follow the Hypothesis profile (CI: 3 × 12;
``nox -s fuzz``: 10 × 30).
"""

from __future__ import annotations

import json

import pytest

from harness.programs.lifecycle import ENV, run_lifecycle
from harness.reports.report import reports_path
from harness.settings import current

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

FUZZ = current().hypothesis_profile == "fuzz" or current().fuzz_requests is not None
SEQUENCES, STEPS = (10, 30) if FUZZ else (3, 12)


@pytest.fixture(scope="module")
def lifecycle_system(stack, tmp_path_factory):
    from harness.drivers.system_under_test import running_system

    with running_system(stack, tmp_path_factory.mktemp("lifecycle-system"), ENV) as sut:
        yield sut


def test_job_lifecycle_state_machine(lifecycle_system, stack, stack_provider):
    sequences = run_lifecycle(lifecycle_system, stack, stack_provider, SEQUENCES, STEPS)
    assert sequences and sum(s["accepted"] for s in sequences) > 0, f"no sequence accepted a job: {sequences}"
    assert any(s["refused"] for s in sequences), "no sequence tried an invalid submission"
    reports_path("fuzz", "lifecycle.json").write_text(json.dumps({"sequences": sequences, "steps": STEPS}, indent=2))
