"""Progress lines on the terminal while pytest captures output."""

from __future__ import annotations

import pytest


def say_to(config: pytest.Config):
    """Print progress to the terminal even while pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:
        if reporter is None:
            print(line)
            return
        if capman is not None:
            with capman.global_and_fixture_disabled():
                reporter.write_line(f"[verisim] {line}")
        else:
            reporter.write_line(f"[verisim] {line}")

    return say
