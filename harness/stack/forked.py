"""Python services forked from a template process that has their heavy libraries imported already.

A worker process spends most of its start-up importing torch and the OpenAI SDK (seconds of CPU each, every time).
The suite starts a hundred of them in one CI run, on a machine whose cores the tests already keep busy, so this
module keeps one *template* per test process: a fork server (multiprocessing's own, a private instance) that has
imported those libraries once. A service started through it is a fork of the template that then runs its module
exactly as ``python -m module args…`` would: its own session, its own environment, working directory and log, killed
with the template (which dies with the test process). What the service does is unchanged; only the imports are
already done. ``ForkedProcess`` is the part of ``subprocess.Popen`` that ``ManagedProcess`` uses.

Under coverage the template stays unmeasured (its tracer would be every child's); a service whose environment asks for
measurement (``COVERAGE_PROCESS_START``) starts its own tracer once forked, before it imports anything of ``system/``,
and saves its data when it ends, as a ``python -m`` start with coverage's ``.pth`` hook would.
``VERISIM_FORK_SERVICES=0`` turns forking off (``python -m harness.settings``).
"""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import subprocess
import sys
import threading
from collections.abc import Iterator
from multiprocessing import popen_forkserver, reduction, spawn, util
from multiprocessing import process as mp_process
from multiprocessing.context import set_spawning_popen
from multiprocessing.forkserver import ForkServer, read_signed

from harness.stack.deathsig import die_with_parent

# imported once by the template: what a worker would otherwise import at every start (and nothing that reads the
# service's settings at import: those come from the environment each service is given)
PRELOAD = ["torch", "openai", "openai.resources.chat", "numpy", "httpx", "psycopg", "redis", "boto3", "pydantic"]
PRELOAD += ["fastapi", "uvicorn", "celery", "harness.stack.forked"]  # the API's, the Celery worker's
PRELOAD += ["music21", "music21.converter", "music21.midi.translate"]  # what a worker's score forkserver preloads
PRELOAD += ["harness.stack.template_warmup"]  # botocore's parsed endpoint data and service models

_SERVER = ForkServer()
_SERVER.set_forkserver_preload(PRELOAD)
_lock = threading.Lock()


def enabled() -> bool:
    """Whether services may be forked from the template (the setting ``fork_services``)."""
    from harness.settings import current

    return current().fork_services


def module_of(argv: list[str]) -> list[str] | None:
    """``[module, args…]`` when ``argv`` runs a module of this interpreter (``python -m module args…``), else None."""
    if len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m":
        return argv[2:]
    return None


def _run(module_argv: list[str], env: dict[str, str] | None, cwd: str | None, log_path: str) -> None:
    """In the forked child: become the service (``python -m`` semantics), with its session, log, env and cwd."""
    os.setsid()
    die_with_parent()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    sys.argv = list(module_argv)
    sys.path.insert(0, os.getcwd())  # as ``python -m`` does
    measured = _start_coverage()
    try:
        runpy.run_module(module_argv[0], run_name="__main__", alter_sys=True)
    finally:
        if measured is not None:  # multiprocessing ends the child with os._exit: no atexit hook would save the data
            measured.stop()
            measured.save()


def _start_coverage():
    """The child's own coverage tracer when its environment asks for one (coverage's ``process_startup``, which a
    fresh interpreter runs from coverage's ``.pth`` file); None when it does not."""
    if "COVERAGE_PROCESS_START" not in os.environ:
        return None
    import coverage

    return coverage.process_startup()


def start_template() -> None:
    """Start the template now (when services are forked at all): it imports its libraries (seconds of CPU) while the
    caller starts other things — the stack — rather than when the first service is wanted. Returns at once."""
    if enabled():
        with _lock:
            _ensure_template()


@contextlib.contextmanager
def template_yielding(niceness: int = 10) -> Iterator[None]:
    """The template at a lower CPU priority for the block, back to normal once it ends: for start-ups beside its
    imports that the caller waits for first. Nothing may be forked from it inside the block (a fork would keep the
    lower priority). Only as root: anyone else may lower a priority but not raise it back, and every service forked
    afterwards would run at the lower one."""
    pid = _SERVER._forkserver_pid  # type: ignore[attr-defined]
    if pid is None or os.geteuid() != 0:
        yield
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, 0)


def stop_template() -> None:
    """Stop the template if it runs (one started early for a run that turned out to need none)."""
    with _lock:
        _SERVER._stop()  # type: ignore[attr-defined]


def _ensure_template() -> None:
    """Start the template if it is not running, outside coverage even when this process is measured: a measured
    template would hand its tracer and its SIGTERM handler (save, exit 1) to every service forked from it."""
    measured = os.environ.pop("COVERAGE_PROCESS_START", None)
    try:
        _SERVER.ensure_running()
    finally:
        if measured is not None:
            os.environ["COVERAGE_PROCESS_START"] = measured


class _Popen(popen_forkserver.Popen):
    """multiprocessing's fork-server launch, on this module's private server (not the global one, which other code
    in the test process — the job budget's tests — starts with preloads of its own)."""

    def _launch(self, process_obj):
        prep_data = spawn.get_preparation_data(process_obj._name)
        # coverage's multiprocessing support, when it measures the test process, hides a "stowaway" here that starts
        # the test process's tracer in the child: the service's own environment decides that instead (_start_coverage)
        prep_data.pop("stowaway", None)
        # nor the caller's main module: multiprocessing would run it again in the child as ``__mp_main__`` (the
        # ``pytest`` script, or ``harness.programs.demo`` and all it imports: 0.2-0.5 s of CPU a service), and the
        # service runs a module of its own (``_run``, which this module defines)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = _SERVER.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))  # type: ignore[attr-defined]
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = read_signed(self.sentinel)


class _Process(mp_process.BaseProcess):
    _start_method = "forkserver"

    @staticmethod
    def _Popen(process_obj):
        return _Popen(process_obj)


class ForkedProcess:
    """A service forked from the template, seen through the part of ``subprocess.Popen``'s interface the harness
    uses: ``pid``, ``poll``, ``wait`` (``subprocess.TimeoutExpired``), ``send_signal``, ``returncode`` (negative: the
    signal that ended it)."""

    def __init__(self, module_argv: list[str], env: dict[str, str] | None, cwd: str | None, log_path: str):
        self.args = module_argv
        self._process = _Process(target=_run, args=(module_argv, env, cwd, log_path), name=module_argv[0])
        with _lock:
            _ensure_template()
            self._process.start()
        self.pid: int = self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)
