"""Each kind of job to the transport it is set to (``INFERENCE_TRANSPORT``, ``SCORE_TRANSPORT``)."""

from __future__ import annotations

from typing import Any

from system.config import Settings
from system.jobs.lifecycle import Kind
from system.transports import open_transport
from system.transports.base import Transport


class JobRouter:
    """Opens the transports the settings name (or uses those given) and sends each message to its kind's."""

    def __init__(self, settings: Settings, transports: dict[str, Transport] | None = None):
        self.kinds: dict[str, str] = {
            Kind.INFERENCE: settings.inference_transport,
            Kind.SCORE: settings.score_transport,
        }
        given = transports or {}
        self.transports: dict[str, Transport] = {
            name: given.get(name) or open_transport(name, settings) for name in sorted(set(self.kinds.values()))
        }

    def transport(self, kind: str) -> str:
        return self.kinds.get(kind, self.kinds[Kind.INFERENCE])

    def send(self, messages: list[dict[str, Any]]) -> list[str]:
        refused: list[str] = []
        for name, transport in self.transports.items():
            mine = [m for m in messages if self.transport(m["kind"]) == name]
            if mine:
                refused += transport.send(mine)
        return refused

    def created(self) -> str:
        """The transports' queue stamps together: a change in any is a queue made anew."""
        stamps = {name: t.created() for name, t in self.transports.items()}
        return " ".join(f"{name}:{stamp}" for name, stamp in stamps.items() if stamp is not None)

    def depth(self) -> dict[str, int]:
        depth: dict[str, int] = {}
        for transport in self.transports.values():
            for k, v in transport.depth().items():
                depth[k] = depth.get(k, 0) + v
        return depth
