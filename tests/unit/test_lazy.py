"""tests/lazy.py: a module imported on first use, never by collection's look at module-level names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.lazy import lazy


def test_the_module_is_imported_by_the_first_read_only():
    code = (
        "import sys; from tests.lazy import lazy; m = lazy('wave')\n"
        "assert 'wave' not in sys.modules\n"
        "try:\n    m._fixture_function_marker\nexcept AttributeError:\n    pass\n"
        "assert 'wave' not in sys.modules, 'a private name imported it'\n"
        "assert m.Error is sys.modules['wave'].Error"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_a_missing_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        lazy("json").no_such_name  # noqa: B018
