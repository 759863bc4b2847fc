"""Services forked from the template (harness.stack.forked) behave as the processes ``python -m`` would start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.stack import forked
from harness.stack.process import ManagedProcess, family

# a service's environment without coverage's variable (CI's measured step sets it: a measured service starts afresh)
PLAIN_ENV = {k: v for k, v in os.environ.items() if k != "COVERAGE_PROCESS_START"}


def managed(tmp_path, *argv: str, env=None) -> ManagedProcess:
    return ManagedProcess(
        "probe", [sys.executable, "-m", *argv], tmp_path / "probe.log", env=env or PLAIN_ENV, forkable=True
    )


def test_a_forked_module_runs_as_python_dash_m_would_with_its_output_in_its_log(tmp_path):
    proc = managed(tmp_path, "calendar", "2026", "12").start()
    assert isinstance(proc.proc, forked.ForkedProcess)  # forked, not exec'd
    assert proc.proc.wait(60) == 0
    assert "December 2026" in proc.log_path.read_text()


def test_its_exit_code_and_the_signal_that_ended_it_are_reported_as_popen_does(tmp_path):
    failing = managed(tmp_path, "json.tool", str(tmp_path / "missing.json")).start()
    assert failing.proc.wait(60) == 2  # argparse: a file it cannot open
    assert "missing.json" in failing.log_path.read_text()  # stderr goes to the log too
    server = managed(tmp_path, "http.server", "--bind", "127.0.0.1", "0").start()
    with pytest.raises(subprocess.TimeoutExpired):
        server.proc.wait(1)  # still serving
    assert server.proc.poll() is None and server.alive()
    assert family(server.pid) == [server.pid]  # its own process, in a session of its own
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == -signal.SIGTERM
    assert server.leftovers() == []


def test_coverage_or_the_switch_means_an_ordinary_process(tmp_path, monkeypatch):
    assert forked.enabled({"PATH": "/usr/bin:/bin"})
    assert not forked.enabled({"COVERAGE_PROCESS_START": "pyproject.toml"})  # the service would be measured
    monkeypatch.setenv("VERISIM_FORK_SERVICES", "0")
    assert not forked.enabled({"PATH": "/usr/bin:/bin"})
    proc = managed(tmp_path, "calendar", env={"PATH": "/usr/bin:/bin"}).start()
    assert isinstance(proc.proc, subprocess.Popen)
    started = time.monotonic()
    assert proc.proc.wait(60) == 0 and time.monotonic() - started < 60
