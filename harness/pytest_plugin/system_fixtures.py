"""The system under test on the session's stack: ``system`` (one for the session) and ``system_factory`` (one of a
test's own, on its own queue)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.pytest_plugin.options import chosen_transport
from harness.pytest_plugin.stack_fixtures import require
from harness.pytest_plugin.terminal import say_to
from harness.stack import Stack

SYSTEM_ENV = {"MAX_UPLOAD_BYTES": "1000000", "SQS_VISIBILITY_TIMEOUT": "20"}


@pytest.fixture(scope="session")
def system(stack: Stack, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The operation server and two worker processes on the session's stack (the stack's default queue).
    Their logs stay in pytest's temporary directory (``<basetemp>/system0/logs``; pytest keeps the last 3 runs)."""
    from harness.drivers.system_under_test import SYSTEM_NEEDS, SystemUnderTest

    require(stack, *SYSTEM_NEEDS)
    say = say_to(request.config)
    sut = SystemUnderTest(
        stack,
        workdir=tmp_path_factory.mktemp("system"),
        env=SYSTEM_ENV,
        progress=say,
        transport=chosen_transport(request.config),
    )
    try:
        sut.start(2)
        yield sut
    except BaseException:
        say(sut.logs())
        raise
    finally:
        sut.stop()
        left = sut.leftovers()
        if left:
            raise AssertionError(f"system processes left behind: {left}")


@pytest.fixture
def system_factory(stack: Stack, tmp_path: Path, request: pytest.FixtureRequest):
    """Factory for a system instance of this test's own (own queue + DLQ): ``system_factory(env={...})``
    (``transport=`` overrides ``--transport``).
    Start its API and workers yourself; everything it started is stopped afterwards; logs stay under ``tmp_path``."""
    from harness.drivers.system_under_test import SYSTEM_NEEDS, SystemUnderTest

    require(stack, *SYSTEM_NEEDS)
    made: list[Any] = []

    def make(env: dict[str, str] | None = None, transport: str | None = None) -> SystemUnderTest:
        sut = SystemUnderTest(
            stack,
            workdir=tmp_path / f"system{len(made)}",
            env={**SYSTEM_ENV, **(env or {})},
            isolated=True,
            transport=transport or chosen_transport(request.config),
        )
        made.append(sut)
        return sut

    yield make
    for sut in made:
        sut.stop()
        assert sut.leftovers() == []
