"""A worker held under a memory cap (harness/faults/memory_cap.py: the kernel's memory cgroup) while jobs run: the
kernel holds it there (reclaims, and kills inside the group if it must), and no job is lost or run twice.

It needs root and a writable cgroup filesystem; where there is none it fails saying so (like a missing backend, it is
never skipped). Select with ``-k memory_cap``."""

from __future__ import annotations

import time

from harness.faults.memory_cap import live_events, memory_cap
from harness.oracles.windows import window_verdicts

MAX_BATCHES = 40  # 20 s of load at most


def test_a_worker_under_a_memory_cap_is_held_there_and_loses_no_job(chaos_system, jobs_for, timeline):
    sut = chaos_system(workers=2, concurrency=4)
    jobs = jobs_for(sut)
    jobs.inference(5, seed=300)
    jobs.wait(timeout=60)
    sent = 5
    with memory_cap(sut.workers[0], timeline, "worker_memory_cap", headroom_mb=1) as fw:
        for i in range(MAX_BATCHES):  # jobs keep coming while it is held, at least 8 batches, until the kernel counts
            jobs.inference(5, seed=310 + 5 * i)  # a refused charge (a peak at the cap is no evidence)
            sent += 5
            time.sleep(0.5)
            if i >= 7 and live_events(fw)["cap_hits"]:
                break
    assert fw.evidence["cap_hits"] >= 1, fw.evidence
    rows = jobs.wait(timeout=120)
    assert {r[0] for r in rows.values()} == {"completed"} and len(rows) == sent, rows
    jobs.assert_ledger(timeout=60)


def test_a_cap_the_worker_never_met_leaves_no_evidence_and_fails_its_window(chaos_system, timeline):
    """The evidence check seen failing: an idle worker with room to spare never met its cap."""
    sut = chaos_system(workers=1, concurrency=1)
    with memory_cap(sut.workers[0], timeline, "roomy_cap", headroom_mb=4096) as fw:
        time.sleep(1)
    assert fw.evidence["cap_hits"] == 0 and fw.evidence["worker_survived"], fw.evidence
    failed = [v for v in window_verdicts("roomy_cap", "cap_hits", 0, {}, {}) if not v.ok]
    assert failed and "cap_hits" in failed[0].line()


def test_a_memory_group_a_dead_run_left_is_removed():
    """A run killed before it could remove its group leaves it: the next one removes it, going by the pid its
    name ends in."""
    import subprocess

    from harness.faults.memory_cap import MemoryGroup

    p = subprocess.Popen(["true"])
    p.wait()
    probe = MemoryGroup("probe")
    left = probe.base / f"verisim-left-{p.pid}"
    left.mkdir()
    probe.create().remove()
    assert not left.exists() and not probe.path.exists()
