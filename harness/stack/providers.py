"""The two providers: ``LocalProvider`` (every service a plain process on 127.0.0.1, no Docker) and
``ContainersProvider`` (every service a Testcontainers container). Each only says how to build a service."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

from harness.stack.container_runtime import ContainerService, image_exists, remove_orphans
from harness.stack.local_runtime import LocalService
from harness.stack.provider import SERVICES, StackProvider
from harness.stack.services import RECIPES


class LocalProvider(StackProvider):
    name = "local"

    def make(self, name: str, port: int, workdir: Path | None = None, **kwargs) -> LocalService:
        local, _ = RECIPES[name]
        if name == "localstack":
            kwargs.setdefault("progress", self.progress)  # building its venv (once) takes minutes: say so
        return local(workdir or self.workdir, port, **kwargs)

    def started_note(self) -> str:
        return f" (logs in {self.workdir / 'logs'})"


class ContainersProvider(StackProvider):
    name = "containers"
    workdir_prefix = "verisim-containers-"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.session = uuid.uuid4().hex[:8]

    def before_start(self) -> None:
        remove_orphans(self.progress)

    def make(self, name: str, port: int, workdir: Path | None = None, **kwargs) -> ContainerService:
        _, container = RECIPES[name]
        if workdir is not None:  # one beside the stack's: a name of its own
            kwargs.setdefault("instance", f"-{port}")
        return container(workdir or self.workdir, port, self.session, **kwargs)

    def started_note(self) -> str:
        return f" (containers verisim-{self.session}-*)"


def missing_images(services: Iterable[str] = SERVICES) -> list[str]:
    """Images the containers provider would use that are not on this machine (Docker would have to pull them)."""
    missing = []
    for name in services:
        _, container = RECIPES[name]
        image = container.chosen_image()
        if not image_exists(image):
            missing.append(image)
    return missing
