"""The systems' fork template started early (``harness.pytest_plugin.stack_fixtures.start_template_early``, from the
chaos and sabotage conftests): started beside collection, stopped once collected when no selected test runs a system,
never started by an xdist controller (it runs no test) or by ``--collect-only``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.pytest_plugin import stack_fixtures
from harness.stack import forked


def _config(numprocesses=None, worker=False, collectonly=False):
    config = SimpleNamespace(
        option=SimpleNamespace(numprocesses=numprocesses),
        getoption=lambda name, default=None: collectonly if name == "collectonly" else default,
        stash=pytest.Stash(),
    )
    if worker:
        config.workerinput = {}
    return config


@pytest.fixture
def calls(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(forked, "start_template", lambda: seen.append("start"))
    monkeypatch.setattr(forked, "stop_template", lambda: seen.append("stop"))
    return seen


def _collected(config, *fixturenames):
    items = [SimpleNamespace(fixturenames=list(names)) for names in fixturenames]
    stack_fixtures.pytest_collection_finish(SimpleNamespace(config=config, items=items))


def test_a_run_that_selects_a_system_test_keeps_the_early_template(calls):
    config = _config()
    stack_fixtures.start_template_early(config)
    _collected(config, ["stack"], ["chaos_system", "jobs_for"])
    assert calls == ["start"]


def test_a_run_whose_selected_tests_need_no_system_stops_it_once_collected(calls):
    config = _config()
    stack_fixtures.start_template_early(config)
    _collected(config, ["stack"], ["tmp_path"])
    assert calls == ["start", "stop"]


@pytest.mark.parametrize(
    "config", [_config(numprocesses=2), _config(collectonly=True)], ids=["xdist_controller", "collect_only"]
)
def test_no_early_template_where_no_test_runs_here(calls, config):
    stack_fixtures.start_template_early(config)
    _collected(config, ["chaos_system"])
    assert calls == []


def test_an_xdist_worker_starts_its_own(calls):
    config = _config(numprocesses=2, worker=True)
    stack_fixtures.start_template_early(config)
    assert calls == ["start"]


def test_a_run_that_never_started_it_early_stops_nothing(calls):
    _collected(_config(), ["tmp_path"])
    assert calls == []


def test_the_template_yields_for_the_block_and_is_back_at_normal_priority_after(monkeypatch):
    import os

    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr(forked._SERVER, "_forkserver_pid", 4242)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(os, "setpriority", lambda which, pid, value: set_to.append((pid, value)))
    with forked.template_yielding(10):
        assert set_to == [(4242, 10)]
    assert set_to == [(4242, 10), (4242, 0)]
    set_to.clear()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # could not raise it back: left alone
    with forked.template_yielding(10):
        pass
    assert set_to == []
