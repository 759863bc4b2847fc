"""The plugin's command-line options (``--stack``, ``--transport``), its ini option (which plugin modules pytest
rewrites), its markers, and the session-wide hooks: a test that takes ``transport`` runs once per transport;
benchmarks run only when asked for; SIGTERM tears down like Ctrl-C."""

from __future__ import annotations

import signal

import pytest

from harness.pytest_plugin import rewrite_scope
from harness.settings import current
from harness.stack.choice import CHOICES
from harness.stack.provider import SERVICES


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Before the first conftest file is imported (and with it, here, Hypothesis): the project's choice of which
    plugin modules pytest rewrites (``rewrite_scope``)."""
    if early_config.getini(rewrite_scope.INI):
        rewrite_scope.narrow()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        rewrite_scope.INI,
        type="bool",
        default=False,
        help="rewrite the asserts of other pytest plugins' entry-point modules only, not of their whole packages "
        "(a faster start where bytecode is not written; harness.pytest_plugin.rewrite_scope)",
    )
    group = parser.getgroup("verisim")
    group.addoption(
        "--stack",
        choices=CHOICES,
        default=current().stack,
        help="where the backing services run: auto (containers when a Docker daemon answers and the images "
        "exist, else local processes), local, or containers. Env: VERISIM_STACK. Default: auto.",
    )
    group.addoption(
        "--stack-services",
        default=current().stack_services,
        metavar="NAME[,NAME…]",
        help=f"start only these backing services (of {', '.join(SERVICES)}); a test whose fixture needs another "
        "fails saying which. Env: VERISIM_STACK_SERVICES. Default: all.",
    )
    group.addoption(
        "--transport",
        choices=("sqs", "celery", "seeds"),
        default=None,
        help="the queue the system's jobs travel on: sqs (every job on SQS, long-polled by the SQS worker), celery "
        "(every job a Celery task on the Redis broker), or seeds (the original designs: scores on SQS, inference "
        "on Celery). Env: VERISIM_TRANSPORT. Default: sqs; tests that take the `transport` fixture run on sqs and "
        "celery both unless one is chosen.",
    )


def chosen_services(config: pytest.Config) -> list[str]:
    """The backing services asked for (``--stack-services``; all when none were), or a usage error naming the
    unknown ones."""
    asked = [s.strip() for s in (config.getoption("--stack-services") or "").split(",") if s.strip()]
    unknown = sorted(set(asked) - set(SERVICES))
    if unknown:
        raise pytest.UsageError(f"--stack-services: unknown {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    return asked or list(SERVICES)


def chosen_transport(config: pytest.Config) -> str | None:
    """The transport asked for (``--transport`` or ``VERISIM_TRANSPORT``); None when none was."""
    return config.getoption("--transport") or current().transport or None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``transport`` runs once per transport (sqs, celery), or on the one chosen."""
    if "transport" in metafunc.fixturenames:
        chosen = chosen_transport(metafunc.config)
        # module scope: a module's system of its own can be built once per transport
        metafunc.parametrize("transport", [chosen] if chosen else ["sqs", "celery"], scope="module")


MARKERS = {
    "integration": "needs the stack (real Postgres, Redis, Kafka, LocalStack, mock OpenAI)",
    "chaos": "fault injection against the stack",
    "load": "Locust-driven load and SLO gates",
    "bench": "pytest-benchmark benchmarks (run by nox -s bench)",
    "fuzz": "generated inputs (Hypothesis): API fuzzing and the stateful lifecycle test (nox -s fuzz runs them longer)",
    "sabotage": "a planted defect that a verdict of the suite must catch (nox -s sabotage)",
    "timing": "judges time or throughput against a limit (SLO gates, p95s, time to recover): never run beside another "
    "test (CI runs these one at a time, after the others ran several at a time)",
    "red_verdicts": "judges time only by asserting that a planted defect turns its verdicts red (a busy neighbour can "
    "only make them redder, never green): runs beside other tests, unlike `timing`",
}


def pytest_configure(config: pytest.Config) -> None:
    chosen_services(config)  # an unknown name is a usage error now, not a failure of the first test that starts it
    for name, what in MARKERS.items():  # registered by the plugin, so a project that installs Verisim has them too
        config.addinivalue_line("markers", f"{name}: {what}")

    # SIGTERM (CI cancelling a job, `timeout`) must run fixture teardown like Ctrl-C does, so nothing is left behind
    def _term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _term)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Benchmarks run only when asked for (``-m bench``, ``--benchmark-only``, ``nox -s bench``): reported as skipped
    otherwise, so a plain ``pytest`` stays quick."""
    asked = "bench" in (config.getoption("markexpr") or "") and "not bench" not in (config.getoption("markexpr") or "")
    if asked or config.getoption("benchmark_only", default=False):
        return
    skip = pytest.mark.skip(reason="benchmark: run with `nox -s bench` (or pytest -m bench)")
    for item in items:
        if item.get_closest_marker("bench"):
            item.add_marker(skip)
