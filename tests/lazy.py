"""A module imported on first use: a test module that needs torch or the OpenAI SDK names it here, so collecting the
suite (every xdist worker of every CI step collects every test file, selected or not) does not import it."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name``; the first attribute read imports it. A name that starts with ``_`` is not
    passed on (collection asks every module-level object for such names). ``monkeypatch.setattr`` on it patches what
    the test module reads through it, not the module itself."""

    def __init__(self, name: str):
        self._name = name

    def module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # what collection asks of every module-level name (pytest's fixture marker, ...)
            raise AttributeError(attr)
        return getattr(self.module(), attr)


def lazy(name: str) -> Any:
    """``torch = lazy("torch")``: read like the module, imported when first read."""
    return LazyModule(name)
