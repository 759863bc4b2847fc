"""Disk full for Postgres (harness/faults/disk.py): a Postgres of the test's own, its data on a disk capped at start,
filled with a ballast while the system runs. Submissions are refused with a 503 that says why — never a 500 —
nothing accepted is lost, and service returns when the space frees.

Select with ``-k disk``."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.drivers.jobs import Jobs
from harness.faults.disk import DATA_CAP, disk_full
from harness.oracles.windows import window_verdicts


@pytest.fixture
def capped_postgres(stack_provider, tmp_path):
    pg = stack_provider.another("postgres", tmp_path / "postgres-capped", data_cap=DATA_CAP)
    yield pg
    pg.stop()
    assert pg.leftovers() == []


@pytest.fixture
def capped_system(capped_postgres, stack, tmp_path, request):
    from harness.drivers.system_under_test import SystemUnderTest
    from harness.pytest_plugin import SYSTEM_ENV, chosen_transport
    from tests.conftest import CHAOS_ENV

    own = replace(stack, postgres=capped_postgres.endpoint())
    sut = SystemUnderTest(
        own,
        workdir=tmp_path / "system",
        env={**SYSTEM_ENV, **CHAOS_ENV},
        isolated=True,
        transport=chosen_transport(request.config),
    )
    sut.start(2, concurrency=4, grace=5)
    yield sut, own
    sut.stop()
    assert sut.leftovers() == []


def test_a_full_disk_refuses_submissions_cleanly_and_loses_nothing(capped_system, capped_postgres, timeline, request):
    sut, own = capped_system
    jobs = Jobs(sut, own, request.node.name, timeline)
    jobs.inference(5, seed=700)
    jobs.wait(timeout=90)
    assert capped_postgres.disk_errors() == 0
    refusals: list[tuple[int | None, str]] = []
    with disk_full(capped_postgres, timeline, "postgres_disk_full") as fw:
        # rows go on landing while their pages have room: submit until the store needs space it has not got
        for i in range(60):
            if not jobs.inference(5, seed=800 + 5 * i):
                refusals.append((jobs.last_status, jobs.last_detail))
                if len(refusals) >= 3:
                    break
    assert fw.evidence["ballast_bytes"] > 0, fw.evidence
    assert refusals, f"60 submissions on a full disk were all accepted: {fw.evidence}"
    assert {status for status, _ in refusals} == {503}, refusals
    assert all("out of disk space" in detail for _, detail in refusals), refusals
    assert fw.evidence["disk_full_errors"] >= 1, fw.evidence
    # the space is back: what was accepted before and during the window completes, and so does what comes next
    jobs.inference(5, seed=1200)
    rows = jobs.wait(timeout=120)
    assert {r[0] for r in rows.values()} == {"completed"}, rows
    jobs.assert_ledger(timeout=60)


def test_a_full_disk_that_nothing_wrote_to_leaves_no_evidence_and_fails_its_window(capped_postgres, timeline):
    """The evidence check seen failing: the disk filled, but no write came, so Postgres refused none."""
    with disk_full(capped_postgres, timeline, "idle_disk_full") as fw:
        pass
    assert fw.evidence["ballast_bytes"] > 0 and fw.evidence["disk_full_errors"] == 0, fw.evidence
    verdicts = window_verdicts("idle_disk_full", "disk_full_errors", 0, {}, {})
    failed = [v for v in verdicts if not v.ok]
    assert failed and "disk_full_errors" in failed[0].line(), [v.line() for v in verdicts]


def test_a_postgres_that_shut_down_on_the_full_disk_is_started_again_once_it_is_freed(capped_postgres, timeline):
    """Postgres gives up when its crash recovery cannot write a WAL segment (seen in CI: the disk filled as the WAL
    crossed into a new segment; the server shut down for good and the chaos run after it found no database). Here it
    dies inside the window (killed: the same outcome, on cue); the fault starts it again on its own disk once the
    ballast is gone, and the data written before is still there."""
    import signal

    import psycopg

    dsn = capped_postgres.endpoint().dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    with disk_full(capped_postgres, timeline, "postgres_disk_full") as fw:
        capped_postgres.signal(signal.SIGKILL)
        assert capped_postgres.exited()
    assert fw.evidence["restarted_s"] > 0 and "exited_in_window" in fw.evidence, fw.evidence
    assert not capped_postgres.exited()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(7,)]


def test_a_capped_disk_a_dead_run_left_mounted_is_removed(tmp_path):
    """A run killed before it could unmount leaves a tmpfs (its data, maybe a ballast, in memory): the next mount
    removes it, going by the pid its source names."""
    import subprocess

    from harness.stack import capped_disk

    left = tmp_path / "left"
    left.mkdir()
    dead = _dead_pid()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M", f"{capped_disk.SOURCE}postgres-{dead}", str(left)], check=True
    )
    assert str(left) in capped_disk.remove_orphans()
    assert str(left) not in open("/proc/mounts").read() and not left.exists()


def _dead_pid() -> int:
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_capped_postgres_keeps_its_data_across_a_restart(capped_postgres):
    """Its disk outlives a stop and start, as a service.restart window needs (Docker's own tmpfs mount would not:
    the full scenario on containers lost every job at its postgres_restart window with it)."""
    import psycopg

    dsn = capped_postgres.endpoint().dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    capped_postgres.halt()
    capped_postgres.start_again()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [(42,)]
