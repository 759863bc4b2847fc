"""Sabotage tests: planted defects that each verdict of the suite must catch (marked ``sabotage``)."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/sabotage/" in str(item.fspath):
            item.add_marker(pytest.mark.sabotage)
