"""Verisim's pytest plugin (the ``pytest11`` entry point ``verisim``; any project that installs the package gets it):
options and markers (``options``), the session's stack and the isolation factories (``stack_fixtures``), the system
under test (``system_fixtures``), a headless browser (``browser_fixture``). Session state lives in
``config.stash``, not in module globals.

The hooks and fixtures of those modules are gathered here, where pytest looks for them."""

import harness.pytest_plugin.rewrite_scope  # noqa: F401 — first: which modules pytest rewrites
from harness.pytest_plugin.browser_fixture import browser
from harness.pytest_plugin.options import (
    MARKERS,
    chosen_transport,
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_generate_tests,
    pytest_load_initial_conftests,
)
from harness.pytest_plugin.stack_fixtures import (
    kafka_topics,
    mock_openai,
    pg_schema,
    pytest_collection_finish,
    pytest_terminal_summary,
    redis_ns,
    s3_prefix,
    sqs_queues,
    stack,
    stack_provider,
    start_template_early,
)
from harness.pytest_plugin.system_fixtures import SYSTEM_ENV, system, system_factory
from harness.pytest_plugin.terminal import say_to

__all__ = [
    "MARKERS",
    "SYSTEM_ENV",
    "browser",
    "chosen_transport",
    "kafka_topics",
    "mock_openai",
    "pg_schema",
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_load_initial_conftests",
    "pytest_terminal_summary",
    "redis_ns",
    "s3_prefix",
    "say_to",
    "sqs_queues",
    "stack",
    "start_template_early",
    "stack_provider",
    "system",
    "system_factory",
]
