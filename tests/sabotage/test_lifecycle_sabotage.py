"""The lifecycle state machine's teeth (``harness.programs.lifecycle``): run against workers with a planted defect, some
sequence must break an invariant, and the failure must name the violation."""

from __future__ import annotations

import traceback

import pytest

from harness.programs.lifecycle import run_lifecycle

# a defect -> the ledger's problem kinds that name it (one is enough to show the teeth; the ledger tests try them all).
# double_publish sends every event twice, so a sequence shows it as a second result event or as a second job_events
# transition: a worker killed between the first and the second send of its terminal events leaves only its
# "running" event doubled (seen in CI: a kill drawn right after the first job completed).
DEFECTS = {"double_publish": ("result_duplicate", "events_duplicate")}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_the_lifecycle_machine_catches_a_planted_defect(defect, chaos_system, stack, stack_provider):
    sut = chaos_system(workers=1, sabotage=defect)
    with pytest.raises(BaseException) as err:  # noqa: PT011 — an AssertionError, or a group of them
        run_lifecycle(
            sut, stack, stack_provider, 2, 5, shrink=False, sabotage=defect, settle_s=5, restarts=()
        )  # restarting the session's stack here slowed later tests' workers
    said = "".join(traceback.format_exception(err.value))
    assert any(f"[{kind}]" in said for kind in DEFECTS[defect]), said[-3000:]
