"""The lifecycle state machine's teeth (``harness.lifecycle``): run against workers with a planted defect, some
sequence must break an invariant, and the failure must name the violation."""

from __future__ import annotations

import traceback

import pytest

from harness.lifecycle import run_lifecycle

DEFECTS = {"double_publish": "result_duplicate"}  # one is enough to show the teeth (the ledger tests try them all)


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_the_lifecycle_machine_catches_a_planted_defect(defect, chaos_system, stack, stack_provider):
    sut = chaos_system(workers=1, sabotage=defect)
    with pytest.raises(BaseException) as err:  # noqa: PT011 — an AssertionError, or a group of them
        run_lifecycle(
            sut, stack, stack_provider, 2, 5, shrink=False, sabotage=defect, settle_s=5, restarts=()
        )  # restarting the session's stack here slowed later tests' workers
    said = "".join(traceback.format_exception(err.value))
    assert DEFECTS[defect] in said, said[-3000:]
