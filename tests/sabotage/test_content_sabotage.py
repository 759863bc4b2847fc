"""The content oracle's and the client journal's teeth, on the real stack: defects from ``harness.sabotage`` planted
in a real worker or API process, or written into the stores behind the system's back, and every verdict each one
names (its ``reveals``) must go red, naming jobs of the run. A ledger that stays green here fails the test.

Worker and API defects that touch different outputs share one process (each names a different verdict); the store
defects each get a job of their own on one honest system. Select with ``-k``: ``outputs``, ``scores``, ``failure``,
``api``, ``stores``.
"""

from __future__ import annotations

import pytest

from harness.polling import wait_for
from harness.sabotage import CATALOG, plant_in_stores

# defects planted together in one process: each reveals what no other of its group does
PROCESS_GROUPS = {
    "outputs": ("worker", ["batch_mixup", "moving_average_off", "metrics_off", "drop_result_event"]),
    "scores": ("worker", ["silent_audio", "analysis_off", "truncated_mp3"]),
    "failure": ("worker", ["invented_failure"]),
    "api": ("api", ["vanishing_job", "input_tampered"]),
}


def red_by_name(report, defects: list[str]) -> None:
    assert not report.ok, f"the ledger stayed green over {defects}: {report.summary()}"
    for name in defects:
        for kind in CATALOG[name].ledger_kinds:
            assert report.kinds[kind] >= 1, f"{name} should turn [{kind}] red: {report.summary()}"


@pytest.mark.parametrize("group", sorted(PROCESS_GROUPS))
def test_process_defects_turn_their_verdicts_red(group, chaos_system, jobs_for, stack):
    target, defects = PROCESS_GROUPS[group]
    planted = ",".join(defects)
    # no worker yet: the jobs wait in the queue, so the first receive takes them together (one batch)
    sut = chaos_system(workers=0, api_sabotage=planted if target == "api" else None)
    jobs = jobs_for(sut)
    ids = jobs.inference(8, seed=11) + jobs.inference(2, seed=40)
    if group == "scores":
        ids += jobs.score("Silent night")
    sut.start_worker(concurrency=4, sabotage=planted if target == "worker" else None)
    if group == "api":  # the vanished jobs never end: wait for the others
        wait_for(lambda: len([r for r in jobs.rows().values() if r[0] == "completed"]) >= 8, 60, what="jobs ran")
    else:
        jobs.wait(timeout=90)
    report = jobs.verdict(timeout=3)
    print(report.summary())
    red_by_name(report, defects)
    named = [p for p in report.problems if p.split(":", 1)[0] in ids]
    assert named, f"no problem names a job of the run: {report.problems[:5]}"
    if group == "outputs":  # both forecasts are caught, each by its own reference
        wrong = [p for p in report.problems if "[prediction_wrong]" in p]
        assert any("lstm" in p and "against the reference" in p for p in wrong), wrong
        assert any("moving_average[0] =" in p and "relative tolerance" in p for p in wrong), wrong
    if group == "failure":
        hits = [p for p in report.problems if "[failed_unbudgeted]" in p]
        assert len(hits) == 10 and all("invented_reason" in p for p in hits), hits
        jobs.expect_failures("invented_reason", 10)  # the same run, its failures budgeted: green
        assert jobs.verdict(timeout=3).ok


def test_store_defects_turn_their_verdicts_red(chaos_system, jobs_for, stack):
    """One honest run, green first; then each store defect on a job of its own, and the ledger names each one."""
    store = sorted(name for name, d in CATALOG.items() if d.target == "store")
    sut = chaos_system(workers=1)
    jobs = jobs_for(sut)
    ids = jobs.inference(len(store), seed=21)
    jobs.wait(timeout=60)
    honest = jobs.verdict(timeout=10)
    assert honest.ok, honest.summary()
    assert honest.content["checked"]["inference: lstm"] == len(store)
    touched = {
        name: plant_in_stores(name, stack, [victim], sut.queue_name) for name, victim in zip(store, ids, strict=True)
    }
    report = jobs.verdict(timeout=2)
    red_by_name(report, store)
    for name, victims in touched.items():
        for kind in CATALOG[name].ledger_kinds:
            hits = [p for p in report.problems if f"[{kind}]" in p]
            assert any(v in p for v in victims for p in hits), f"{name}: [{kind}] does not name {victims}: {hits}"
