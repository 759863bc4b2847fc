"""The provider interface, and how ``--stack=auto|local|containers`` picks one."""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterable

from harness.stack.endpoints import Stack

SERVICES = ("postgres", "redis", "kafka", "localstack", "mock_openai")


class StackUnavailable(RuntimeError):
    """The requested provider cannot run here; the message says what to do."""


class StackProvider(abc.ABC):
    name: str

    @abc.abstractmethod
    def start(self, services: Iterable[str] = SERVICES) -> Stack:
        """Start the services, return once every one answers a real round trip (bounded), or raise."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop everything this provider started. Idempotent."""

    @abc.abstractmethod
    def leftovers(self) -> dict[str, list[int]]:
        """Whatever this provider started that is still alive (after ``stop`` this must be empty)."""

    def __enter__(self) -> StackProvider:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def choose_provider(kind: str | None, progress: Callable[[str], None] = print, **kwargs) -> StackProvider:
    """``kind`` (or ``$VERISIM_STACK``): ``auto`` = containers when a daemon answers and the images exist, else local."""
    kind = (kind or os.environ.get("VERISIM_STACK") or "auto").lower()
    if kind not in ("auto", "local", "containers"):
        raise StackUnavailable(f"unknown stack provider {kind!r}: choose auto, local or containers")
    if kind in ("auto", "containers"):
        from harness.docker.daemon import daemon_answers

        ok, why = daemon_answers()
        if ok:
            from harness.stack.containers import ContainersProvider, missing_images

            missing = missing_images()
            if not missing:
                progress(f"stack: containers ({why})")
                return ContainersProvider(progress=progress, **kwargs)
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
    from harness.stack.local import LocalProvider

    return LocalProvider(progress=progress, **kwargs)
