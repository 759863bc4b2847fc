"""Which provider ``--stack=auto|local|containers`` (or ``$VERISIM_STACK``) gets."""

from __future__ import annotations

from collections.abc import Callable

from harness.docker import daemon
from harness.settings import current
from harness.stack import providers
from harness.stack.provider import StackProvider, StackUnavailable

CHOICES = ("auto", "local", "containers")


def choose_provider(kind: str | None, progress: Callable[[str], None] = print, **kwargs) -> StackProvider:
    """``auto`` = containers when a daemon answers and the images exist, else local (and says why)."""
    kind = (kind or current().stack).lower()
    if kind not in CHOICES:
        raise StackUnavailable(f"unknown stack provider {kind!r}: choose {', '.join(CHOICES[:-1])} or {CHOICES[-1]}")
    if kind in ("auto", "containers"):
        ok, why = daemon.daemon_answers()
        if ok:
            missing = providers.missing_images()
            if not missing:
                progress(f"stack: containers ({why})")
                return providers.ContainersProvider(progress=progress, **kwargs)
            why = f"images not built: {', '.join(missing)} (build them with `nox -s images`)"
        if kind == "containers":
            raise StackUnavailable(
                f"--stack=containers needs a Docker daemon with Verisim's images, but: {why}. "
                "Get one with `python3 dev.py docker` (installs Debian's docker.io if needed, starts dockerd, builds the "
                "images offline; or `apt-get install -y docker.io && python -m harness.docker.daemon && nox -s images`), "
                "or use --stack=local."
            )
        progress(f"stack: local processes (containers not used: {why})")
    else:
        progress("stack: local processes (--stack=local)")
    return providers.LocalProvider(progress=progress, **kwargs)
