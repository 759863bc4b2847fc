"""A size-capped filesystem for a service's data, and the ballast that fills it (the disk-full fault,
``harness.faults.disk``).

A tmpfs of the given size mounted on this host (``mount`` needs root, which the local stack has: it runs Postgres as
an unprivileged user for that reason): over the local service's run directory, or bound into its container (Docker's
own ``--tmpfs`` would not do: its contents go when the container stops, and a service restart must keep the data).
A tmpfs holds only what is written to it, so the cap costs no memory until the ballast fills it; the ballast is
deleted when the fault ends.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

from harness.stack.process import ServiceStartError

BALLAST = "ballast"  # the file that fills the disk, beside the service's data
NO_SPACE = "No space left on device"  # strerror(ENOSPC), as every service logs it
SOURCE = "verisim-disk-"  # a capped disk's mount source: verisim-disk-<service>-<pid of the process that mounted it>
_CHUNK = 1 << 20


def mount(service: str, path: Path, cap: str) -> None:
    """Mount a tmpfs of size ``cap`` (e.g. ``1G``) on ``path``; first unmount what a run that died left mounted (its
    source names the process that mounted it)."""
    remove_orphans()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={cap},mode=0755", f"{SOURCE}{service}-{os.getpid()}", str(path)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise ServiceStartError(
            service,
            f"a data disk capped at {cap} needs a tmpfs mount, which failed (exit {r.returncode}): "
            f"{r.stderr.strip()} — the local stack mounts it as root; run as root or use --stack containers",
        )


def unmount(path: Path) -> None:
    """Unmount it (lazily: a process that still holds a file there lets go of it on its own)."""
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remove_orphans() -> list[str]:
    """Unmount (and remove the directory of) every capped disk whose process is gone: a run killed before it could
    (a tmpfs keeps its data and any ballast in memory until then)."""
    removed: list[str] = []
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return removed
    for line in mounts:
        source, where, *_ = line.split()
        owner = source.rsplit("-", 1)[-1]
        if source.startswith(SOURCE) and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            unmount(Path(where))
            shutil.rmtree(where, ignore_errors=True)
            removed.append(where)
    return removed


def fill(path: Path) -> int:
    """Write a ballast file under ``path`` until the filesystem refuses (ENOSPC); returns its size in bytes."""
    zeros = bytes(_CHUNK)
    written = 0
    fd = os.open(path / BALLAST, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                n = os.write(fd, zeros)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    return written
                raise
            if n == 0:
                return written
            written += n
    finally:
        os.close(fd)


def free(path: Path) -> None:
    """Delete the ballast: the space is back."""
    (path / BALLAST).unlink(missing_ok=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
