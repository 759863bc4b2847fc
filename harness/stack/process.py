"""Child processes the stack owns: started with their own log file, killed with their parent, never left behind.

Every process is started

* in a new session (so a Ctrl-C aimed at pytest does not race our own orderly shutdown),
* with ``PR_SET_PDEATHSIG=SIGKILL`` (so even a SIGKILLed pytest takes its servers with it), and
* from the main thread: the death signal fires when the *thread* that forked dies, so never spawn from a pool.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.stack import forked
from harness.stack.deathsig import die_with_parent
from harness.stack.forked import ForkedProcess


class ServiceStartError(RuntimeError):
    """A service did not become ready: carries its name, the reason and the tail of its log."""

    def __init__(self, service: str, reason: str, log_path: Path | None = None, log_tail: str = ""):
        self.service = service
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        msg = f"{service} failed to start: {reason}"
        if log_path:
            msg += f"\n--- last lines of {log_path} ---\n{log_tail or '(log is empty)'}"
        super().__init__(msg)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports on ``host`` (sockets held until all are chosen)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, session id) for every live, non-zombie process. Read with bare descriptors (a Python file object
    per process costs twice as much, and a busy machine has hundreds)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{entry}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            stat = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        # fields after the parenthesised command name: state ppid pgrp session ...
        fields = stat.rsplit(b")", 1)[1].split(None, 4)
        if fields[0] != b"Z":
            table[int(entry)] = (int(fields[1]), int(fields[3]))
    return table


def family(leader: int, table: dict[int, tuple[int, int]] | None = None) -> list[int]:
    """The leader, its descendants (Postgres' backends call setsid themselves) and the rest of its session
    (in ``table``, a ``process_table()`` read by the caller, or a fresh one)."""
    table = process_table() if table is None else table
    members = {pid for pid, (_, sid) in table.items() if sid == leader}
    if leader in table:
        members.add(leader)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in table.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grew = True
    return sorted(members)


def alive(pids, table: dict[int, tuple[int, int]] | None = None) -> list[int]:
    table = process_table() if table is None else table
    return sorted(p for p in pids if p in table)


def _running(pid: int) -> bool:
    """``pid`` is a live, non-zombie process: one read of its own stat, not the whole table's."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class ManagedProcess:
    """One server process with a log file, a bounded readiness wait and a stop that leaves nothing behind."""

    _registry: list[ManagedProcess] = []
    _registry_lock = threading.Lock()

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        user: int | None = None,
        group: int | None = None,
        stop_signal: int = signal.SIGTERM,
        stop_grace: float = 5.0,
        forkable: bool = False,
    ):
        """``forkable``: ``argv`` is ``python -m module …`` and may be forked from the test process's template, which
        has the heavy libraries imported already (``harness.stack.forked``), rather than started afresh."""
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.user = user
        self.group = group
        self.stop_signal = stop_signal
        self.stop_grace = stop_grace
        self.forkable = forkable
        self.proc: subprocess.Popen | ForkedProcess | None = None
        self.started_at: float | None = None
        self._seen: set[int] = set()  # the pids of this process's family, as last seen alive

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> ManagedProcess:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("ManagedProcess.start() must run on the main thread (PR_SET_PDEATHSIG is per thread)")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        module = forked.module_of(self.argv) if self.forkable and self.user is None else None
        if module is not None and forked.enabled():
            self.proc = forked.ForkedProcess(module, self.env, str(self.cwd) if self.cwd else None, str(self.log_path))
            return self._started()
        log = open(self.log_path, "ab")
        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs.update(user=self.user, group=self.group, extra_groups=[])
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=die_with_parent,
                **kwargs,
            )
        except OSError as exc:
            raise ServiceStartError(self.name, f"cannot execute {self.argv[0]}: {exc}", self.log_path) from exc
        finally:
            log.close()
        return self._started()

    def _started(self) -> ManagedProcess:
        self.started_at = time.monotonic()
        with self._registry_lock:
            self._registry.append(self)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def wait_ready(
        self,
        probe: Callable[[], object],
        timeout: float,
        interval: float = 0.05,
        cancel: threading.Event | None = None,
    ) -> float:
        """Call ``probe`` until it returns without raising; seconds since start. Bounded by ``timeout``
        (and given up at once when ``cancel`` is set, e.g. because a sibling service failed)."""
        assert self.proc is not None and self.started_at is not None
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServiceStartError(self.name, f"process exited with code {code}", self.log_path, self.log_tail())
            try:
                probe()
                return time.monotonic() - self.started_at
            except Exception as exc:  # the probe's failure is the reason we keep waiting
                last_error = exc
            if cancel is not None and cancel.is_set():
                raise ServiceStartError(self.name, "start abandoned: another service failed")
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    self.name,
                    f"not ready after {timeout:.0f}s (last probe error: {last_error!r})",
                    self.log_path,
                    self.log_tail(),
                )
            time.sleep(interval)

    def members(self, table: dict[int, tuple[int, int]] | None = None) -> list[int]:
        """Live pids of this process's family (remembered, so orphans re-parented to init still count), in ``table``
        (a ``process_table()`` the caller shares between processes) or a fresh read."""
        if self.proc is None:
            return []
        table = process_table() if table is None else table  # one read of /proc (a few ms with hundreds of processes)
        live = alive(self._seen.union(family(self.proc.pid, table)), table)
        self._seen = set(live)  # a pid that has ended is forgotten: its number may come back as another's process
        return live

    def _stopping(self) -> bool:
        """While a stop waits: whether any of the family is left. The pids already seen are checked one by one (the
        family was read before the signal); the whole table is read again only once they are all gone, for a
        descendant born since. Waiting costs a few reads of /proc a poll, not a scan of every process twice."""
        return any(_running(pid) for pid in self._seen) or bool(self.members())

    def stop(self) -> None:
        """Signal the leader (it shuts its own children down), wait ``stop_grace``, then SIGKILL what is left."""
        stop_all([self])

    def kill(self) -> None:
        """SIGKILL the whole family at once, and wait until it is gone."""
        if self.proc is None:
            return
        _kill(self.members(), signal.SIGKILL)
        self._finish_stop()

    def _signal_stop(self) -> None:
        if self.proc is None:
            return
        self.members()  # snapshot the family before anyone is re-parented
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(self.stop_signal)
            except ProcessLookupError:
                pass

    def _finish_stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(self.stop_grace)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + self.stop_grace
        while (left := self._stopping()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:  # past the grace: what is left is killed
            _kill(self.members(), signal.SIGKILL)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 5  # SIGKILL is asynchronous: give the kernel a moment to finish them
            while self._stopping() and time.monotonic() < deadline:
                time.sleep(0.02)
        self.proc.poll()  # a leader that ended while the family was watched is reaped
        with self._registry_lock:
            if self in self._registry:
                self._registry.remove(self)

    def leftovers(self, table: dict[int, tuple[int, int]] | None = None) -> list[int]:
        return self.members(table)

    @classmethod
    def kill_all(cls) -> None:
        """Last-resort cleanup (atexit, signal handlers): SIGKILL every process still registered."""
        with cls._registry_lock:
            procs = list(cls._registry)
            cls._registry.clear()
        for p in procs:
            if p.proc is not None:
                _kill(p.members(), signal.SIGKILL)
                try:
                    p.proc.wait(2)
                except subprocess.TimeoutExpired:
                    pass


def _kill(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


import atexit  # noqa: E402

atexit.register(ManagedProcess.kill_all)


def stop_all(procs: Sequence[ManagedProcess | None]) -> None:
    """Stop several processes as ``ManagedProcess.stop`` does, all signalled first: their shutdowns overlap (a worker
    takes about a second to finish its long poll), so stopping N costs about the slowest, not the sum."""
    live = [p for p in procs if p is not None]
    for p in live:
        p._signal_stop()
    for p in live:
        p._finish_stop()


def stop_on_sigterm() -> threading.Event:
    """An event SIGTERM sets (from now on, start-up included): the caller then stops what it started."""
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def run_until_stopped(stop: threading.Event) -> None:
    """Block until Ctrl-C or ``stop`` is set: the foreground loop of ``python -m harness.stack up`` and ``nox -s up``.
    Ctrl-C sets the event through a handler of its own: a process a shell starts in the background inherits SIGINT
    ignored, and Python then never raises KeyboardInterrupt (a stack CLI so started ran on after SIGINT)."""
    import signal

    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("\nrunning; Ctrl-C to stop", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        signal.signal(signal.SIGINT, previous)
