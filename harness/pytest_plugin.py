"""pytest wiring for the stack: ``--stack``, the session ``stack`` fixture and the per-test isolation factories.

Loaded from the root ``conftest.py``. The stack starts lazily, the first time a test asks for it, so unit tests
never pay for it. A backend that cannot start fails the session with its log tail; nothing is ever skipped
because a backend is missing.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.report import REPORTS
from harness.settings import current
from harness.stack import Stack, choose_provider
from harness.stack.choice import CHOICES
from harness.stack.isolation import KafkaTopics, PgSchema, RedisNamespace, S3Prefix, SqsQueues

_started: dict = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("verisim")
    group.addoption(
        "--stack",
        choices=CHOICES,
        default=current().stack,
        help="where the backing services run: auto (containers when a Docker daemon answers and the images "
        "exist, else local processes), local, or containers. Env: VERISIM_STACK. Default: auto.",
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


def _say(config: pytest.Config):
    """Print progress to the terminal even while pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:
        if reporter is None:
            print(line)
            return
        if capman is not None:
            with capman.global_and_fixture_disabled():
                reporter.write_line(f"[verisim] {line}")
        else:
            reporter.write_line(f"[verisim] {line}")

    return say


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Every backing service (Postgres, Redis, Kafka, SQS+S3, mock OpenAI), real and throwaway, for this session."""
    say = _say(request.config)
    say("")
    provider = choose_provider(request.config.getoption("--stack"), progress=say)
    started = time.monotonic()
    try:
        s = provider.start()
    except BaseException:
        provider.stop()
        raise
    _started["_provider"] = provider
    _started.update(
        provider=provider.name,
        total_seconds=round(time.monotonic() - started, 3),
        ready_seconds=s.ready_seconds,
        prepare_seconds=s.prepare_seconds,
    )
    try:
        yield s
    finally:
        provider.stop()
        left = provider.leftovers()
        if left:
            raise AssertionError(f"stack teardown left processes behind: {left}")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _started:
        return
    REPORTS.mkdir(parents=True, exist_ok=True)
    history = REPORTS / "stack-history.jsonl"
    previous = None
    if history.exists():
        lines = history.read_text().strip().splitlines()
        previous = json.loads(lines[-1]) if lines else None
    record = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **{k: v for k, v in _started.items() if k != "_provider"}}
    with history.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    terminalreporter.section("verisim stack")
    parts = ", ".join(f"{k} {v:.2f}s" for k, v in _started["ready_seconds"].items())
    line = f"{_started['provider']} stack up in {_started['total_seconds']:.2f}s ({parts})"
    if previous:
        line += f"; previous run {previous['total_seconds']:.2f}s"
    terminalreporter.write_line(line)
    terminalreporter.write_line(f"timings appended to {history}")


@pytest.fixture(scope="session")
def stack_provider(stack: Stack):
    """The provider that started the session's stack: what process faults stop, pause and restart."""
    return _started["_provider"]


# -- per-test isolation ---------------------------------------------------------------------------------------
@pytest.fixture
def sqs_queues(stack: Stack):
    """Factory: ``sqs_queues.create(dlq=True, max_receive_count=2)`` → a fresh queue (deleted afterwards)."""
    queues = SqsQueues(stack.aws)
    yield queues
    queues.cleanup()


@pytest.fixture
def s3_prefix(stack: Stack):
    """A key prefix of this test's own in the stack's bucket (emptied afterwards)."""
    prefix = S3Prefix(stack.aws)
    yield prefix
    prefix.cleanup()


@pytest.fixture
def kafka_topics(stack: Stack):
    """Factory: ``kafka_topics.create()`` → a fresh topic; ``group_id()``, ``consumer_config()`` for consumers."""
    topics = KafkaTopics(stack.kafka)
    yield topics
    topics.cleanup()


@pytest.fixture
def redis_ns(stack: Stack):
    """A Redis key prefix of this test's own, with a client (``decode_responses=True``)."""
    ns = RedisNamespace(stack.redis)
    yield ns
    ns.cleanup()


@pytest.fixture
def pg_schema(stack: Stack):
    """A Postgres schema of this test's own; ``pg_schema.dsn`` has ``search_path`` set to it. Dropped afterwards."""
    schema = PgSchema(stack.postgres)
    yield schema
    schema.cleanup()


@pytest.fixture
def mock_openai(stack: Stack):
    """Control of the mock OpenAI service, reset before and after the test so knobs never leak between tests."""
    from harness.faults import MockOpenAIControl

    control = MockOpenAIControl(stack.openai)
    control.reset()
    yield control
    control.reset()
    control.close()


# -- the system under test ------------------------------------------------------------------------------------
SYSTEM_ENV = {"MAX_UPLOAD_BYTES": "1000000", "SQS_VISIBILITY_TIMEOUT": "20"}


@pytest.fixture(scope="session")
def system(stack: Stack, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The operation server and two worker processes on the session's stack (the stack's default queue).
    Their logs stay in pytest's temporary directory (``<basetemp>/system0/logs``; pytest keeps the last 3 runs)."""
    from harness.system_under_test import SystemUnderTest

    say = _say(request.config)
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
    from harness.system_under_test import SystemUnderTest

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


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright (never a downloaded browser). Fails, never skips, without it."""
    import shutil
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("Chromium is not installed: `apt-get install chromium` (python3 dev.py setup does it)")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()
