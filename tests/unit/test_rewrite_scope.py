"""pytest rewrites the asserts of test modules, conftest files and each plugin's entry-point module, and no longer of
whole plugin distributions (``harness.pytest_plugin.rewrite_scope``): not the system under test, not the harness's
library, not Hypothesis' internals — modules every pytest process would otherwise rewrite and compile again at import
where bytecode is not written."""

from __future__ import annotations

import sys

from harness.pytest_plugin import rewrite_scope


def rewritten(module) -> bool:
    """A module with asserts that pytest rewrote carries the helpers its rewritten asserts call."""
    return "@py_builtins" in vars(module)


def test_this_run_rewrites_tests_and_the_plugin_but_not_the_library_or_the_system():
    import hypothesis.core

    import harness.pytest_plugin.system_fixtures
    import harness.stack.process
    import system.worker.processor

    assert rewritten(sys.modules[__name__])
    assert rewritten(harness.pytest_plugin.system_fixtures)  # the plugin's fixtures keep pytest's messages
    assert not rewritten(harness.stack.process)
    assert not rewritten(system.worker.processor)
    assert not rewritten(hypothesis.core)


class Hook:
    """pytest's rewriting import hook, as far as the narrowing sees it."""

    def __init__(self, marked: set[str]):
        self._must_rewrite = marked


def test_a_plugin_distributions_mark_becomes_its_entry_points_and_other_marks_stay(monkeypatch):
    hook = Hook({"harness", "system", "hypothesis", "_hypothesis_pytestplugin", "xdist", "their_helpers"})
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    rewrite_scope.narrow()
    marked = hook._must_rewrite
    assert {"harness.pytest_plugin", "_hypothesis_pytestplugin", "xdist.plugin", "their_helpers"} <= marked
    assert not {"harness", "system", "hypothesis", "xdist"} & marked, marked


def test_an_editable_install_listing_no_files_is_narrowed_by_its_entry_points(monkeypatch):
    monkeypatch.setattr(rewrite_scope, "plugin_distributions", lambda: (set(), {"harness.pytest_plugin"}))
    hook = Hook({"harness"})
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    rewrite_scope.narrow()
    assert hook._must_rewrite == {"harness.pytest_plugin"}
