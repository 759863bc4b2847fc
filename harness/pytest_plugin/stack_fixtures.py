"""The session's stack (``stack``, ``stack_provider``), its start-up time in the terminal summary, and the per-test
isolation factories on it (a queue, a key prefix, a topic, a Redis namespace, a Postgres schema, the mock OpenAI
service's knobs). The stack starts lazily, the first time a test asks for it, so unit tests never pay for it; a
backend that cannot start fails the session with its log tail — nothing is skipped because a backend is missing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.pytest_plugin.terminal import say_to
from harness.reports.report import REPORTS
from harness.stack import Stack, choose_provider
from harness.stack.isolation import KafkaTopics, PgSchema, RedisNamespace, S3Prefix, SqsQueues

PROVIDER = pytest.StashKey[Any]()  # the provider that started the session's stack
STARTED = pytest.StashKey[dict]()  # how long it took, service by service
EARLY = pytest.StashKey[bool]()  # the systems' fork template was started before collection (start_template_early)


def needs_system(items) -> bool:
    """Whether any of these tests runs the system under test (asks for a fixture named for it)."""
    return any("system" in name for item in items for name in getattr(item, "fixturenames", ()))


# what the tests' own process would otherwise import at its first verdict or upload: the reference's decoder and
# score analysis, the Kafka client
WARM_IMPORTS = ("numpy", "miniaudio", "music21.converter", "music21.analysis.discrete", "confluent_kafka")


def _warm_test_process() -> None:
    """The test process's first-use costs, paid while the stack starts (its threads mostly wait on probes): the
    libraries the verdicts import lazily, and the score the clients upload (written out once, then cached). A failure
    here is left for the test that needs the same thing to meet and report."""
    import importlib
    import os

    try:
        # at a lower priority than the stack's and the template's start-ups, which the first test waits for
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        for name in WARM_IMPORTS:
            importlib.import_module(name)
        from system.simulators.scores import musicxml

        musicxml()
    except Exception:  # noqa: BLE001, S110 - the test that needs it raises it where it is reported
        pass


def _template_yielding(provider):
    """Containers start through dockerd and their own init, CPU the template's imports would take: the template
    yields to them while they start (it has time to spare there; on the local stack it is what the first system
    waits for, so it does not)."""
    import contextlib

    from harness.stack import forked

    return forked.template_yielding() if provider.name == "containers" else contextlib.nullcontext()


def start_template_early(config: pytest.Config) -> None:
    """For a conftest whose directory's tests nearly all run a system, called from its ``pytest_configure`` (which
    pytest calls as it imports the conftest: at start-up when pytest was pointed there, else when collection reaches
    it). The systems' fork template (``harness.stack.forked``: seconds of imports) starts now, beside collection,
    rather than once the first test asks for the stack. An xdist controller, which runs no test, and
    ``--collect-only`` start none; a run whose selected tests turn out to need no system stops it once collected."""
    from harness.stack import forked

    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    if config.getoption("collectonly", default=False):
        return
    forked.start_template()
    config.stash[EARLY] = True


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.stash.get(EARLY, False) and not needs_system(session.items):
        from harness.stack import forked

        forked.stop_template()


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Every backing service (Postgres, Redis, Kafka, SQS+S3, mock OpenAI, Prometheus), real and throwaway, for this
    session; only those ``--stack-services`` names when it names some."""
    from harness.pytest_plugin.options import chosen_services

    say = say_to(request.config)
    say("")
    services = chosen_services(request.config)
    provider = choose_provider(request.config.getoption("--stack"), progress=say)
    if needs_system(request.session.items):
        from harness.stack import forked

        forked.start_template()  # the systems' template imports torch and the rest while the stack starts
    threading.Thread(target=_warm_test_process, name="verisim-warm", daemon=True).start()
    started = time.monotonic()
    try:
        with _template_yielding(provider):
            s = provider.start(services)
    except BaseException:
        provider.stop()
        raise
    request.config.stash[PROVIDER] = provider
    request.config.stash[STARTED] = {
        "provider": provider.name,
        "total_seconds": round(time.monotonic() - started, 3),
        "ready_seconds": s.ready_seconds,
        "prepare_seconds": s.prepare_seconds,
    }
    try:
        yield s
    finally:
        provider.stop()
        left = provider.leftovers()
        if left:
            raise AssertionError(f"stack teardown left processes behind: {left}")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """How long the stack took to come up, beside the previous run's time (appended to the stack history)."""
    _started = config.stash.get(STARTED, None)
    if not _started:
        return
    REPORTS.mkdir(parents=True, exist_ok=True)
    history = REPORTS / "stack-history.jsonl"
    previous = None
    if history.exists():
        lines = history.read_text().strip().splitlines()
        previous = json.loads(lines[-1]) if lines else None
    record = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **_started}
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
def stack_provider(stack: Stack, request: pytest.FixtureRequest):
    """The provider that started the session's stack: what process faults stop, pause and restart."""
    return request.config.stash[PROVIDER]


def require(stack: Stack, *services: str) -> None:
    """Fail the test, naming them, when the session's stack did not start ``services`` (``--stack-services``)."""
    missing = [name for name in services if stack.endpoint(name) is None]
    if missing:
        pytest.fail(
            f"this test needs {', '.join(missing)}, which the session's stack did not start "
            f"(--stack-services / VERISIM_STACK_SERVICES chose {', '.join(stack.ready_seconds) or 'none'})",
            pytrace=False,
        )


# -- per-test isolation ---------------------------------------------------------------------------------------
@pytest.fixture
def sqs_queues(stack: Stack):
    """Factory: ``sqs_queues.create(dlq=True, max_receive_count=2)`` → a fresh queue (deleted afterwards)."""
    require(stack, "localstack")
    queues = SqsQueues(stack.aws)
    yield queues
    queues.cleanup()


@pytest.fixture
def s3_prefix(stack: Stack):
    """A key prefix of this test's own in the stack's bucket (emptied afterwards)."""
    require(stack, "localstack")
    prefix = S3Prefix(stack.aws)
    yield prefix
    prefix.cleanup()


@pytest.fixture
def kafka_topics(stack: Stack):
    """Factory: ``kafka_topics.create()`` → a fresh topic; ``group_id()``, ``consumer_config()`` for consumers."""
    require(stack, "kafka")
    topics = KafkaTopics(stack.kafka)
    yield topics
    topics.cleanup()


@pytest.fixture
def redis_ns(stack: Stack):
    """A Redis key prefix of this test's own, with a client (``decode_responses=True``)."""
    require(stack, "redis")
    ns = RedisNamespace(stack.redis)
    yield ns
    ns.cleanup()


@pytest.fixture
def pg_schema(stack: Stack):
    """A Postgres schema of this test's own; ``pg_schema.dsn`` has ``search_path`` set to it. Dropped afterwards."""
    require(stack, "postgres")
    schema = PgSchema(stack.postgres)
    yield schema
    schema.cleanup()


@pytest.fixture
def mock_openai(stack: Stack):
    """Control of the mock OpenAI service, reset before and after the test so knobs never leak between tests."""
    from harness.faults import MockOpenAIControl

    require(stack, "mock_openai")
    control = MockOpenAIControl(stack.openai)
    control.reset()
    yield control
    control.reset()
    control.close()
