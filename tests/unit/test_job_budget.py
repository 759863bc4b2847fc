"""The per-job budget (``system.pipelines.budget``): work that breaches its time or memory budget is stopped in its
own process and reported as a permanent failure with its reason; everything else comes back as it was."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from harness.polling import poll_until
from system.pipelines.base import PermanentJobError
from system.pipelines.budget import BudgetError, run_within_budget


# -- work for the child (module level: the child imports it by name) -------------------------------------------------
def hold(mb: int, seconds: float) -> int:
    block = os.urandom(1024) * (mb * 1024)  # every page touched
    time.sleep(seconds)
    return len(block)


def refuse(code: str) -> None:
    raise PermanentJobError(code, "the file says no")


def crash(how: str) -> None:
    if how == "exit":
        os._exit(3)
    os.kill(os.getpid(), signal.SIGKILL)


def fail() -> None:
    raise ZeroDivisionError("a bug in the reading code")


def children() -> set[int]:
    """The job processes alive now: the children of the budget's fork server (multiprocessing's global one). The
    harness's service template (``harness.stack.forked``) is a fork server too, whose children are the services of
    the session's system when this test process runs one."""
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    return {c.pid for c in psutil.Process(pid).children()} if pid else set()


# -- the verdicts --------------------------------------------------------------------------------------------------
def test_the_work_comes_back_with_its_value():
    assert run_within_budget(hold, 5, 0.0, seconds=30, memory_mb=200) == 5 * 2**20


def test_running_past_the_time_budget_stops_the_child_and_fails_permanently():
    t0 = time.monotonic()
    with pytest.raises(PermanentJobError) as err:
        run_within_budget(time.sleep, 30, seconds=0.5, memory_mb=100)
    took = time.monotonic() - t0
    assert err.value.code == "time_budget_exceeded" and "0.5s" in err.value.message
    assert took < 5, f"stopped after {took:.1f}s (budget 0.5 s)"
    assert not children(), "the child outlived its budget"


def test_a_breach_names_the_work_it_stopped():
    """The score pipeline runs two kinds of work in children (reading the file, rendering the audio): the failure says
    which ran past its budget."""
    with pytest.raises(PermanentJobError) as err:
        run_within_budget(time.sleep, 30, seconds=0.3, memory_mb=100, task="rendering the audio")
    assert err.value.message.startswith("rendering the audio ran past its time budget of 0.3s"), err.value.message
    with pytest.raises(PermanentJobError) as err:
        run_within_budget(crash, "exit", seconds=30, memory_mb=100, task="rendering the audio")
    assert err.value.message == "the process rendering the audio died (exit code 3)"


def test_growing_past_the_memory_budget_stops_the_child_and_fails_permanently():
    t0 = time.monotonic()
    with pytest.raises(PermanentJobError) as err:
        run_within_budget(hold, 300, 20.0, seconds=30, memory_mb=100)
    assert err.value.code == "memory_budget_exceeded" and "100 MB" in err.value.message
    assert time.monotonic() - t0 < 10
    assert not children(), "the child outlived its budget"


def test_an_allocation_too_fast_for_the_watch_hits_the_address_space_limit():
    """2 GB at once with a 100 MB budget: past RLIMIT_AS (2 × 100 MB + 512 MB) before the watch could look."""
    with pytest.raises(PermanentJobError) as err:
        run_within_budget(bytearray, 2 * 2**30, seconds=30, memory_mb=100)
    assert err.value.code == "memory_budget_exceeded"


def test_within_budget_the_same_work_completes():
    assert run_within_budget(hold, 50, 0.3, seconds=30, memory_mb=200) == 50 * 2**20


def test_a_permanent_error_of_the_work_keeps_its_code_and_message():
    with pytest.raises(PermanentJobError) as err:
        run_within_budget(refuse, "unparseable_score", seconds=30, memory_mb=100)
    assert (err.value.code, err.value.message) == ("unparseable_score", "the file says no")


def test_an_unexpected_error_is_not_a_permanent_failure():
    with pytest.raises(BudgetError, match="ZeroDivisionError: a bug in the reading code"):
        run_within_budget(fail, seconds=30, memory_mb=100)


@pytest.mark.parametrize(("how", "said"), [("exit", "exit code 3"), ("kill", "signal SIGKILL")])
def test_a_child_that_dies_without_a_word_fails_the_job_with_how_it_died(how, said):
    with pytest.raises(PermanentJobError) as err:
        run_within_budget(crash, how, seconds=30, memory_mb=100)
    assert err.value.code == "job_process_died" and said in err.value.message


def test_a_child_whose_worker_died_stops_too():
    """A worker killed (SIGKILL) while its job process reads a file: the job process must not run on."""
    import subprocess
    import sys

    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nfrom system.pipelines.budget import "
            "run_within_budget\nrun_within_budget(time.sleep, 60, seconds=60, memory_mb=100)",
        ]
    )
    try:

        def job_processes() -> list[psutil.Process]:
            servers = [p for p in psutil.Process(worker.pid).children() if "forkserver" in " ".join(p.cmdline())]
            return [c for s in servers for c in s.children()]

        job = poll_until(job_processes, 30)
        assert job, "no job process started"
        time.sleep(0.5)  # its watch has begun
    finally:
        worker.kill()
        worker.wait(10)
    poll_until(lambda: not any(running(p) for p in job), 5)
    alive = [p for p in job if running(p)]
    assert not alive, f"job process {alive} ran on without its worker"


def running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE  # an orphan's zombie waits for an init that may not reap it
    except psutil.NoSuchProcess:
        return False


# -- the forkserver forked from the worker (start_server) ------------------------------------------------------------
SERVER_CHECK = """
import json, os, pathlib, sys, threading, time
import psutil
from system.pipelines import budget
from system.pipelines.base import PermanentJobError
threads = sys.argv[1] == "threads"
held = open(sys.argv[2], "w")  # a descriptor of the worker's own, which its server must not hold
if threads:
    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
forked = budget.start_server()
ppid = budget.run_within_budget(os.getppid, seconds=30, memory_mb=100)
job_name = budget.run_within_budget(pathlib.Path("/proc/self/comm").read_text, seconds=30, memory_mb=100).strip()
from multiprocessing import forkserver
server = psutil.Process(forkserver._forkserver._forkserver_pid)
try:
    budget.run_within_budget(time.sleep, 10, seconds=0.5, memory_mb=100)
    breach = None
except PermanentJobError as exc:
    breach = exc.code
print(json.dumps({"forked": forked, "server_parent": server.ppid(), "server_cmdline": server.cmdline(),
                  "job_parent": ppid, "job_name": job_name,
                  "server_name": pathlib.Path(f"/proc/{server.pid}/comm").read_text().strip(), "server": server.pid, "breach": breach, "me": os.getpid(),
                  "server_files": [os.readlink(f"/proc/{server.pid}/fd/{f}") for f in os.listdir(f"/proc/{server.pid}/fd")]}))
"""


@pytest.mark.parametrize("threads", [False, True], ids=["single_threaded", "with_threads"])
def test_a_single_threaded_worker_forks_its_score_server_and_a_threaded_one_execs_it(threads, tmp_path):
    """``start_server`` in a process with one thread: the server is a fork of it (its command line, not the exec'd
    interpreter's), holding only its own descriptors; jobs are its children and budgets still hold. With a second
    thread it declines, and multiprocessing's own server starts at the first job, as before."""
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", SERVER_CHECK, "threads" if threads else "single", str(tmp_path / "held")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["forked"] is (not threads)
    assert (got["server_parent"], got["job_parent"]) == (got["me"], got["server"]), got
    exec_d = "from multiprocessing.forkserver import main" in " ".join(got["server_cmdline"])
    assert exec_d is threads, got["server_cmdline"]
    assert got["breach"] == "time_budget_exceeded"
    # ps and top tell the score processes from the worker whose command line they share (the exec'd server keeps its
    # interpreter's name; its children take the name)
    assert got["job_name"] == "verisim-score"
    assert (got["server_name"] == "verisim-score") is (not threads), got["server_name"]
    assert str(tmp_path / "held") not in got["server_files"], got["server_files"]
