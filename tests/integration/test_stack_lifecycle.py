"""The stack's promises about processes: started in parallel, bounded waits, nothing left behind."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.polling import poll_until, wait_for
from harness.stack.__main__ import command
from harness.stack.process import ServiceStartError, alive, family
from harness.stack.providers import LocalProvider

ROOT = Path(__file__).resolve().parents[2]


def test_teardown_leaves_no_process_behind(tmp_path):
    provider = LocalProvider(workdir=tmp_path, progress=lambda _: None)
    stack = provider.start(["postgres", "redis", "kafka", "mock_openai"])
    assert stack.postgres and stack.redis and stack.kafka and stack.openai
    # every process of every service, postgres' backends included
    pids = [pid for s in provider.services.values() for pid in family(s.process.pid)]
    assert len(family(provider.services["postgres"].process.pid)) >= 3  # postmaster and its backends
    assert alive(pids) == sorted(pids)
    provider.stop()
    assert provider.leftovers() == {}
    assert alive(pids) == []


def _start_cli(tmp_path, services="postgres,redis,kafka", sigint_ignored=False):
    """``sigint_ignored``: as a shell starts a command in the background, with SIGINT ignored from the start."""
    out = tmp_path / "stack.json"
    proc = subprocess.Popen(
        command("local", services.split(","), str(out)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
    )
    wait_for(lambda: out.exists() or proc.poll() is not None, 60, what="the stack CLI's JSON")
    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    time.sleep(0.2)  # the file is complete
    info = json.loads(out.read_text())
    pids = sorted(pid for leader in info["pids"].values() for pid in family(leader))
    assert alive(pids) == pids and len(pids) >= 5
    return proc, pids


@pytest.mark.parametrize(
    "sig, sigint_ignored",
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "ctrl-c-started-in-background", "sigterm"],
)
def test_interrupted_session_stops_every_service(tmp_path, sig, sigint_ignored):
    proc, pids = _start_cli(tmp_path, sigint_ignored=sigint_ignored)
    proc.send_signal(sig)
    try:
        output, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM stops it and its services: a red run leaves nothing behind either
        output, _ = proc.communicate(timeout=30)
        pytest.fail(f"still running 30 s after {sig.name}:\n{output}")
    assert proc.returncode == 0, output
    assert "no process left behind" in output
    assert alive(pids) == []


def test_killed_parent_takes_its_services_with_it(tmp_path):
    """Even SIGKILL, which runs no cleanup at all, leaves nothing: children die with their parent (PDEATHSIG)."""
    proc, pids = _start_cli(tmp_path)
    proc.kill()
    proc.wait(10)
    assert poll_until(lambda: alive(pids) == [], 10), f"still running after the CLI was killed: {alive(pids)}"


@pytest.mark.parametrize(
    "service, bad_args, expected_in_log",
    [
        ("redis", ["--no-such-directive", "1"], "Bad directive"),
        ("postgres", ["-c", "no_such_setting=1"], "unrecognized configuration parameter"),
    ],
)
def test_a_service_that_cannot_start_fails_fast_with_its_log_tail(tmp_path, service, bad_args, expected_in_log):
    provider = LocalProvider(workdir=tmp_path, progress=lambda _: None, overrides={service: {"extra_args": bad_args}})
    started = time.monotonic()
    with pytest.raises(ServiceStartError) as info:
        provider.start([service, "kafka"])
    elapsed = time.monotonic() - started
    assert info.value.service == service
    assert "exited with code" in info.value.reason
    assert expected_in_log in str(info.value)  # the log tail is in the error the user sees
    assert elapsed < provider.services[service].ready_timeout  # failed on exit, not after a timeout
    assert provider.leftovers() == {}  # the healthy sibling was stopped too


def test_a_service_that_never_answers_fails_after_its_bounded_wait(tmp_path, monkeypatch):
    from harness.stack.services.redis import LocalRedis

    monkeypatch.setattr(LocalRedis, "ready_timeout", 1.5)
    monkeypatch.setattr(LocalRedis, "probe", lambda self: (_ for _ in ()).throw(ConnectionError("no answer")))
    provider = LocalProvider(workdir=tmp_path, progress=lambda _: None)
    started = time.monotonic()
    with pytest.raises(ServiceStartError, match="not ready after 2s") as info:
        provider.start(["redis"])
    assert 1.5 <= time.monotonic() - started < 10
    assert "no answer" in info.value.reason
    assert provider.leftovers() == {}
