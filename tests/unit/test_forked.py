"""Services forked from the template (harness.stack.forked) behave as the processes ``python -m`` would start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from coverage import CoverageData

from harness.stack import forked
from harness.stack.process import ManagedProcess, family

# a service's environment without coverage's variable (CI's measured step sets it)
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


def test_a_fork_whose_environment_asks_for_coverage_measures_itself_and_saves_its_data(tmp_path):
    (tmp_path / "probe_mod.py").write_text("def twice(x):\n    return 2 * x\n\nprint(twice(21))\n")
    rc = tmp_path / "covrc"
    rc.write_text(f"[run]\nsource = {tmp_path}\nparallel = true\n")
    env = {**PLAIN_ENV, "COVERAGE_PROCESS_START": str(rc), "COVERAGE_FILE": str(tmp_path / ".coverage")}
    proc = ManagedProcess("probe", [sys.executable, "-m", "probe_mod"], tmp_path / "probe.log", env=env, cwd=tmp_path)
    proc.forkable = True
    proc.start()
    assert isinstance(proc.proc, forked.ForkedProcess)
    assert proc.proc.wait(60) == 0 and "42" in proc.log_path.read_text()
    written = list(tmp_path.glob(".coverage.*"))
    assert len(written) == 1 and str(proc.pid) in written[0].name  # the child's own data file, not the template's
    data = CoverageData(str(written[0]))
    data.read()
    assert data.lines(str(tmp_path / "probe_mod.py")) == [1, 2, 4]  # measured from its first line


def test_the_switch_means_an_ordinary_process(tmp_path, monkeypatch):
    assert forked.enabled()
    monkeypatch.setenv("VERISIM_FORK_SERVICES", "0")
    assert not forked.enabled()
    proc = managed(tmp_path, "calendar", env={"PATH": "/usr/bin:/bin"}).start()
    assert isinstance(proc.proc, subprocess.Popen)
    started = time.monotonic()
    assert proc.proc.wait(60) == 0 and time.monotonic() - started < 60


def test_a_fork_does_not_run_the_callers_main_module_again(tmp_path, monkeypatch):
    """multiprocessing would run the caller's ``__main__`` again in every child (the ``pytest`` script, a harness
    program and all it imports: CPU at every service start); a forked service runs its own module only."""
    import types

    marker = tmp_path / "main-ran"
    script = tmp_path / "caller.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    caller = types.ModuleType("__main__")
    caller.__file__ = str(script)
    caller.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", caller)
    proc = managed(tmp_path, "calendar", "2026", "12").start()
    assert isinstance(proc.proc, forked.ForkedProcess) and proc.proc.wait(60) == 0
    assert "December 2026" in proc.log_path.read_text()
    assert not marker.exists(), "the fork ran the caller's main module"


def test_a_forked_service_makes_aws_clients_from_the_templates_parsed_botocore_data(tmp_path):
    """The template's warm-up (harness.stack.template_warmup) leaves botocore's endpoint data and the SQS and S3
    models parsed in its default session: a service's client is made without reading a JSON file of them again, and
    with the endpoint and region the service gives it, not the template's."""
    (tmp_path / "aws_probe.py").write_text(
        "import boto3, botocore.loaders as L\n"
        "reads = []\n"
        "load = L.JSONFileLoader.load_file\n"
        "L.JSONFileLoader.load_file = lambda self, path: reads.append(path) or load(self, path)\n"
        "c = boto3.client('sqs', region_name='eu-west-1', endpoint_url='http://127.0.0.1:4566',\n"
        "                 aws_access_key_id='a', aws_secret_access_key='b')\n"
        "print('endpoint', c.meta.endpoint_url, c.meta.region_name)\n"
        "print('json files read', len(reads), reads[:3])\n"
    )
    proc = ManagedProcess(
        "probe", [sys.executable, "-m", "aws_probe"], tmp_path / "probe.log", env=PLAIN_ENV, cwd=tmp_path, forkable=True
    ).start()
    assert isinstance(proc.proc, forked.ForkedProcess) and proc.proc.wait(60) == 0
    out = proc.log_path.read_text()
    assert "endpoint http://127.0.0.1:4566 eu-west-1" in out, out
    assert "json files read 0 " in out, out
