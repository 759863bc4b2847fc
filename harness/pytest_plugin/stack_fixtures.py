"""The session's stack (``stack``, ``stack_provider``), its start-up time in the terminal summary, and the per-test
isolation factories on it (a queue, a key prefix, a topic, a Redis namespace, a Postgres schema, the mock OpenAI
service's knobs). The stack starts lazily, the first time a test asks for it, so unit tests never pay for it; a
backend that cannot start fails the session with its log tail — nothing is skipped because a backend is missing."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """Every backing service (Postgres, Redis, Kafka, SQS+S3, mock OpenAI, Prometheus), real and throwaway, for this
    session; only those ``--stack-services`` names when it names some."""
    from harness.pytest_plugin.options import chosen_services

    say = say_to(request.config)
    say("")
    services = chosen_services(request.config)
    provider = choose_provider(request.config.getoption("--stack"), progress=say)
    if any("system" in name for item in request.session.items for name in getattr(item, "fixturenames", ())):
        from harness.stack import forked

        forked.start_template()  # the systems' template imports torch and the rest while the stack starts
    started = time.monotonic()
    try:
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
