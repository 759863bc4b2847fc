"""Root conftest: the suite's fixtures live in ``harness.pytest_plugin`` (``--stack``, ``stack``, isolation factories)."""

pytest_plugins = ["harness.pytest_plugin"]
