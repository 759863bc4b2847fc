"""Root conftest. The suite's fixtures (``--stack``, ``stack``, the isolation factories, markers) come from Verisim's pytest
plugin, ``harness.pytest_plugin``, which installing the package registers (the ``pytest11`` entry point)."""
