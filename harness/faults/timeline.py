"""Every fault a test injects, with when it started and ended and its parameters: the report shades these windows."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class FaultWindow:
    name: str
    family: str  # http | tcp | process | aws | host | disk
    params: dict
    start: float
    end: float | None = None
    evidence: dict = field(default_factory=dict)  # what the fault did to the system (counted by whoever injected it)


@dataclass
class FaultTimeline:
    seed: int = 0
    windows: list[FaultWindow] = field(default_factory=list)

    @contextlib.contextmanager
    def window(self, name: str, family: str, **params) -> Iterator[FaultWindow]:
        w = FaultWindow(name, family, params, time.time())
        self.windows.append(w)
        try:
            yield w
        finally:
            w.end = time.time()

    def as_dicts(self) -> list[dict]:
        return [asdict(w) for w in self.windows]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"seed": self.seed, "faults": self.as_dicts()}, indent=2))
