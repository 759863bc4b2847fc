"""One cache directory for everything Verisim keeps between runs (tool venvs, Postgres templates, LocalStack cache)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from harness.settings import current


def cache_dir() -> Path:
    """``$VERISIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/verisim``, else ``~/.cache/verisim``."""
    explicit = current().cache_dir
    if explicit:
        root = explicit
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "verisim"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def cache_lock(name: str, progress=None) -> Iterator[None]:
    """An exclusive file lock so two sessions never build the same cached thing at once; ``progress`` is told when
    another process holds it (the wait may be minutes)."""
    lock_path = cache_dir() / f".{name}.lock"
    with open(lock_path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                progress(f"waiting for another process that holds the {name} lock ({lock_path}) to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
