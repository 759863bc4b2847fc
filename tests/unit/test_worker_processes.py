"""``python -m system.worker --processes``: a count or ``auto``, never more processes than the usable cores."""

from __future__ import annotations

import argparse

import pytest

from system.worker import __main__ as worker_main


def test_processes_take_a_count_or_auto():
    assert worker_main._processes("3") == 3 and worker_main._processes("auto") == 0
    for bad in ("0", "-1", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            worker_main._processes(bad)


@pytest.mark.parametrize(("asked", "cores", "runs"), [("2", 2, 2), ("8", 2, 2), ("auto", 4, 4)])
def test_processes_are_capped_at_the_usable_cores(monkeypatch, capsys, asked, cores, runs):
    seen = {}
    monkeypatch.setattr(worker_main, "usable_cores", lambda: cores)
    monkeypatch.setattr(worker_main, "supervise", lambda args: seen.setdefault("n", args.processes) and 0)
    assert worker_main.main(["--processes", asked]) == 0
    assert seen["n"] == runs
    if asked == "8":
        assert "8 processes asked, 2 core(s) usable: running 2" in capsys.readouterr().err


def test_the_usable_cores_follow_a_cgroup_quota(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 cores' worth
    assert worker_main._cgroup_cpu_quota(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert worker_main._cgroup_cpu_quota(str(tmp_path)) is None
    monkeypatch.setattr(worker_main, "_cgroup_cpu_quota", lambda: 1.5)
    monkeypatch.setattr(worker_main.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert worker_main.usable_cores() == 1
