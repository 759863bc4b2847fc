"""Per-job time and memory budgets: work whose cost an uploaded file controls runs in a child process of its own.

music21 parses and analyses whatever a user uploads, in pure Python, and a file can be built to make that take minutes
or gigabytes. Run in the worker's own thread, such a job would slow or kill every other job of the worker, and its
message, redelivered after the crash, would go on to hurt the next worker. So the score pipeline's reading and analysis
run through :func:`run_within_budget`:

* **A child per job**, forked from a forkserver that has music21 loaded already (a fork costs milliseconds; importing
  music21 costs a second). Other jobs of the worker run in their own threads and children, untouched. A worker that
  starts the forkserver before its first thread (:func:`start_server`) forks it from itself, with what it has
  imported, instead of multiprocessing's fresh interpreter that imports everything again.
* **Memory**: the child's resident memory may grow by ``memory_mb`` over its size at start; the parent reads it
  every 20 ms and kills the child past it → the job fails ``memory_budget_exceeded``. An address-space limit
  (``RLIMIT_AS``, twice the budget and 512 MB more) stops an allocation too fast for the watch: it fails with
  ``MemoryError``, reported the same way. (A budget enforced by ``RLIMIT_AS`` alone was tried: with a tight limit,
  CPython sometimes spins after a failed allocation instead of raising, so the watch is the primary.)
* **Time**: the parent waits ``seconds`` (wall clock), then kills the child → ``time_budget_exceeded``. ``RLIMIT_CPU``
  backs this up; and a child whose worker has died stops within a second.
* Both breaches are **permanent** failures: the job fails with its reason and the message is deleted, so the file is
  not handed to the next worker.

Subprocesses the child starts (an OMR engine) get the memory limit lifted again (:func:`lift_limits`): a JVM reserves
far more address space than it uses, and the OMR command has its own timeout.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from system.pipelines.base import PermanentJobError

PRELOAD = [
    "music21",
    "music21.converter",
    "music21.midi.translate",
    "system.pipelines.score_read",
    "tinysoundfont",
    "lameenc",
    "system.pipelines.score_warm",  # last: reads and renders a tiny score, so that every child starts warm
]
WATCH_INTERVAL_SECONDS = 0.02  # how often the parent reads the child's resident memory
AS_BACKSTOP_FACTOR, AS_BACKSTOP_EXTRA = 2, 512 * 2**20  # RLIMIT_AS: for an allocation too fast for the watch
MEMORY_EXIT_CODE = 86  # the child ran out of its memory budget even while reporting it
PROCESS_NAME = b"verisim-score"  # the score jobs' server and children, as ps and top show them (Linux comm): they
# share their worker's command line when the server is forked from it
SCORE_CHILD_NICE = 5  # a score child's CPU priority below its worker's (nice): inference jobs are not slowed by it
CPU_GRACE_SECONDS = 5  # RLIMIT_CPU = the time budget + this: only a backstop for a child whose parent has died

_lock = threading.Lock()
_context = None


class BudgetError(Exception):
    """The work raised something unexpected inside its child (not a budget breach, not a ``PermanentJobError``)."""


def context():
    """The forkserver context, with the score libraries preloaded into the server."""
    global _context
    with _lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
        return _context


def start_server() -> bool:
    """Start the score jobs' forkserver as a fork of this process, which must still have a single thread (a fork copies
    only the calling thread, and another's locks would stay held in the copy). multiprocessing's own start execs a
    fresh interpreter that imports music21 and its dependencies again (half a second of CPU at every worker start);
    the fork has whatever this process imported already, and imports the rest (``PRELOAD``) itself, beside the
    worker's own start. The server then serves exactly as multiprocessing's: the same protocol, the same children.

    False, and nothing started, when the process has threads already or the server runs: the first job (or
    :func:`warm_up`) then starts multiprocessing's own, as before."""
    import socket
    from multiprocessing import connection, forkserver, resource_tracker

    mp_connection: Any = connection  # arbitrary_address: not in the type stubs

    context()
    if len(os.listdir("/proc/self/task")) != 1:
        return False
    server: Any = (
        forkserver._forkserver
    )  # the forkserver context's server (private to multiprocessing: attributes below)
    with server._lock:
        if server._forkserver_pid is not None:
            return False
        resource_tracker.ensure_running()  # as multiprocessing's start does; its fd is handed to every child
        with socket.socket(socket.AF_UNIX) as listener:
            address = mp_connection.arbitrary_address("AF_UNIX")
            listener.bind(address)
            os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()  # every client holds the write end: the server ends when all have gone
            pid = os.fork()
            if pid == 0:  # the server: never returns into the worker's code
                try:
                    _become_server(listener.fileno(), alive_r, alive_w)
                finally:
                    os._exit(0)
            os.close(alive_r)
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid
    return True


def _become_server(listener: int, alive_r: int, alive_w: int) -> None:
    """In the forked server: only its own descriptors (as the exec'd server is given), no measurement of its own (a
    measured worker's coverage would save over the worker's data on SIGTERM; the children start their own), then
    multiprocessing's server loop."""
    import signal
    import sys
    from multiprocessing import forkserver

    _name(PROCESS_NAME)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.settrace(None)
    threading.settrace(None)
    os.close(alive_w)
    for fd in (int(name) for name in os.listdir("/proc/self/fd")):
        if fd > 2 and fd not in (listener, alive_r):
            try:
                os.close(fd)
            except OSError:  # the descriptor of the listing itself, gone already
                pass
    for module in PRELOAD:
        __import__(module)
    gc.freeze()  # what the server holds now is never collected in a child: no child copies its pages to scan them
    forkserver.main(listener, alive_r, PRELOAD)


def _name(name: bytes) -> None:
    """This process's name (Linux ``prctl(PR_SET_NAME)``; the command line stays). Nothing where it cannot be set."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def warm_up() -> None:
    """Start the forkserver and wait until it has imported music21 and forked once, so neither the first job nor the
    worker's first seconds of work pay for it (the preload is a second of CPU, in the background otherwise)."""
    run_within_budget(os.getpid, seconds=120, memory_mb=512)


def _statm(field: int, pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[field]) * os.sysconf("SC_PAGE_SIZE")


def address_space_bytes(pid: int | str = "self") -> int:
    return _statm(0, pid)


def lift_limits() -> None:
    """For a subprocess of the child (``preexec_fn``): back to the hard limits the worker itself runs under."""
    for limit in (resource.RLIMIT_AS, resource.RLIMIT_CPU):
        resource.setrlimit(limit, (resource.getrlimit(limit)[1],) * 2)


def resident_bytes(pid: int | str = "self") -> int:
    return _statm(1, pid)


def gone(pid: int) -> bool:
    """The process has exited (or is a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def _exit_with_worker(worker: int) -> None:
    """A job whose worker has died has no one to report to: stop (checked twice a second)."""
    while not gone(worker):
        time.sleep(0.5)
    os._exit(1)


def _child(conn, worker: int, fn: Callable[..., Any], args: tuple, memory_bytes: int, cpu_seconds: int) -> None:
    _name(PROCESS_NAME)  # as the server's (a child of multiprocessing's exec'd server does not inherit it)
    hard_as = resource.getrlimit(resource.RLIMIT_AS)[1]
    backstop = address_space_bytes() + AS_BACKSTOP_FACTOR * memory_bytes + AS_BACKSTOP_EXTRA
    resource.setrlimit(resource.RLIMIT_AS, (backstop, hard_as))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, resource.getrlimit(resource.RLIMIT_CPU)[1]))
    threading.Thread(target=_exit_with_worker, args=(worker,), daemon=True).start()
    os.nice(SCORE_CHILD_NICE)  # reading a score may take seconds of CPU: the worker's short jobs go first
    conn.send(("started", resident_bytes()))
    try:
        outcome: tuple = ("ok", fn(*args))
    except PermanentJobError as exc:
        outcome = ("permanent", exc.code, exc.message)
    except MemoryError:
        outcome = ("memory",)
    except BaseException as exc:  # noqa: BLE001 — reported to the parent, which decides
        outcome = ("error", f"{type(exc).__name__}: {exc}"[:500])
    resource.setrlimit(resource.RLIMIT_AS, (hard_as, hard_as))  # what failed has been freed; room to report it
    try:
        conn.send(outcome)
    except MemoryError:
        os._exit(MEMORY_EXIT_CODE)
    conn.close()


def _memory_breach(memory_mb: float, task: str) -> PermanentJobError:
    return PermanentJobError(
        "memory_budget_exceeded",
        f"{task} needed more than its memory budget of {memory_mb:g} MB (SCORE_JOB_MEMORY_MB) and was stopped",
    )


def _time_breach(seconds: float, task: str) -> PermanentJobError:
    return PermanentJobError(
        "time_budget_exceeded",
        f"{task} ran past its time budget of {seconds:g}s (SCORE_JOB_TIMEOUT_SECONDS) and was stopped",
    )


def _watch(proc, receiver, seconds: float, memory_mb: float, task: str):
    """The child's outcome, or None if it died without one; a breach of either budget raises."""
    deadline = time.monotonic() + seconds
    base = None
    while True:
        if receiver.poll(WATCH_INTERVAL_SECONDS):  # also wakes when the child dies
            try:
                message = receiver.recv()
            except EOFError:
                return None
            if message[0] != "started":
                return message
            base = message[1]
        if time.monotonic() >= deadline:
            raise _time_breach(seconds, task)
        if base is not None:
            try:
                grown = resident_bytes(proc.pid) - base
            except (OSError, IndexError):  # gone between the poll and the read: the next poll says how
                continue
            if grown > memory_mb * 2**20:
                raise _memory_breach(memory_mb, task)


def run_within_budget(
    fn: Callable[..., Any], *args: Any, seconds: float, memory_mb: float, task: str = "reading the file"
) -> Any:
    """``fn(*args)`` in a child process; its return value (picklable), or the breach as a ``PermanentJobError`` whose
    message names ``task``.

    A ``PermanentJobError`` raised by ``fn`` comes back as one; anything else unexpected as a :class:`BudgetError`."""
    ctx = context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_child,
        name="verisim-job",
        daemon=True,
        args=(sender, os.getpid(), fn, args, int(memory_mb * 2**20), math.ceil(seconds) + CPU_GRACE_SECONDS),
    )
    proc.start()
    sender.close()
    try:
        outcome = _watch(proc, receiver, seconds, memory_mb, task)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(10)
        receiver.close()
    if outcome is None:  # died without a word
        code = proc.exitcode
        if code == MEMORY_EXIT_CODE:
            raise _memory_breach(memory_mb, task)
        if code == -signal.SIGXCPU:
            raise _time_breach(seconds, task)
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        raise PermanentJobError("job_process_died", f"the process {task} died ({how})")
    if outcome[0] == "ok":
        return outcome[1]
    if outcome[0] == "permanent":
        raise PermanentJobError(outcome[1], outcome[2])
    if outcome[0] == "memory":
        raise _memory_breach(memory_mb, task)
    raise BudgetError(outcome[1])
