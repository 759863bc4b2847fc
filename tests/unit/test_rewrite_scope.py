"""pytest rewrites the asserts of test modules, conftest files and each plugin's entry-point module, and no longer of
whole plugin distributions (``harness.pytest_plugin.rewrite_scope``): never the system under test or the harness's
library; not Hypothesis' internals where the project asks for it (Verisim's pyproject does) — modules every pytest
process would otherwise rewrite and compile again at import where bytecode is not written."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


def test_without_the_ini_option_only_verisims_own_mark_is_narrowed(monkeypatch):
    hook = Hook({"harness", "system", "hypothesis", "their_plugin"})
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    rewrite_scope.narrow(rewrite_scope.OWN)
    assert hook._must_rewrite == {"harness.pytest_plugin", "hypothesis", "their_plugin"}


def test_another_project_keeps_its_plugins_rewritten_unless_it_asks(tmp_path):
    """In a folder of another project (its own ini file, no option): the harness and the system are not rewritten,
    Hypothesis still is; with the option, it is not. (Schemathesis' plugin, which imports Hypothesis as it loads,
    before any ini option can act, is left unloaded, as Verisim's own pyproject leaves it.)"""
    (tmp_path / "test_theirs.py").write_text(
        textwrap.dedent("""
            import hypothesis.core
            import harness.stack.process

            def test_what_is_rewritten():
                print("REWRITTEN", "@py_builtins" in vars(hypothesis.core), "@py_builtins" in vars(harness.stack.process))
        """)
    )

    def run(ini: str) -> str:
        (tmp_path / "pytest.ini").write_text(f"[pytest]\naddopts = -p no:schemathesis\n{ini}\n")
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_theirs.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return next(line for line in r.stdout.splitlines() if line.startswith("REWRITTEN"))

    assert run("") == "REWRITTEN True False"
    assert run(f"{rewrite_scope.INI} = true") == "REWRITTEN False False"


def test_an_editable_install_listing_no_files_is_narrowed_by_its_entry_points(monkeypatch):
    monkeypatch.setattr(rewrite_scope, "plugin_distributions", lambda: (set(), {"harness.pytest_plugin"}))
    hook = Hook({"harness"})
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    rewrite_scope.narrow()
    assert hook._must_rewrite == {"harness.pytest_plugin"}
