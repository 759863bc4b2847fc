"""The Testcontainers provider (issue 3). Until it lands, ``--stack=containers`` says so instead of pretending."""

from __future__ import annotations

from harness.stack.provider import StackProvider, StackUnavailable

IMAGES = {
    "postgres": "verisim/postgres:16",
    "redis": "verisim/redis:7",
    "kafka": "verisim/tansu:0.6.0",
    "localstack": "verisim/localstack:4.13.1",
    "mock_openai": "verisim/mock-openai:latest",
}


def missing_images() -> list[str]:
    import subprocess

    missing = []
    for image in IMAGES.values():
        r = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=10)
        if r.returncode != 0:
            missing.append(image)
    return missing


class ContainersProvider(StackProvider):
    name = "containers"

    def __init__(self, *args, **kwargs):
        raise StackUnavailable("the containers provider is not built yet (issue #3); use --stack=local")

    def start(self, services=()):  # pragma: no cover - unreachable until issue 3
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover
        pass

    def leftovers(self):  # pragma: no cover
        return {}
