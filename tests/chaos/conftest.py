"""Chaos tests: every test here is marked ``chaos`` (fixtures in tests/conftest.py)."""

import pytest

from harness.pytest_plugin import start_template_early


def pytest_configure(config):
    """Nearly every test here runs a system: its fork template starts importing as pytest collects."""
    start_template_early(config)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/chaos/" in str(item.fspath):
            item.add_marker(pytest.mark.chaos)
